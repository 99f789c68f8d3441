"""The converter: a trained classifier + calibration data + a recipe -> a :class:`SpikingNetwork`.

Steps (each its own module): :func:`~zoo.conversion.graph.canonicalize` (trace, fold BN, find activations),
:func:`~zoo.conversion.calibration.calibrate` (activation statistics), :func:`compute_thresholds`
(normalization), :func:`build_snn` (neurons, pooling, encoder, readout; optionally the weight form), and for a
calibrated recipe :func:`~zoo.conversion.correction.fit_corrections` (per-channel corrections).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from zoo.conversion.calibration import ActivationStats, calibrate, iterate_inputs
from zoo.conversion.correction import correction_channels, fit_corrections
from zoo.conversion.graph import ActPoint, ConversionError, _set_module, act_points, canonicalize
from zoo.conversion.normalization import compute_thresholds, neuron_depths, to_weight_form
from zoo.conversion.variants import Recipe, get_variant
from zoo.inputs import InputError
from zoo.spiking.layer import ENCODERS, MembraneReadout, PoissonEncoder, RateGatedMaxPool2d, SoftmaxReadout, SpikeCountReadout
from zoo.spiking.network import SpikingNetwork
from zoo.spiking.neuron import BaseNode, IFNode, LIFNode, PLIFNode, TSSLNode

OUTPUT = "output_probe"


def _make_neuron(point: ActPoint, threshold: Tensor, recipe: Recipe, compensation: float,
                 channels: int = 1) -> BaseNode:
    synapse = math.exp(-recipe.dt / recipe.synapse_tau) if recipe.synapse_tau else None
    zeros = torch.zeros(channels)
    corrections = {"potential": dict(v_offset=zeros), "bias": dict(current=zeros)}.get(recipe.correction, {})
    if point.kind == "plif":  # a directly trained SNN (Fang 2021): its own neurons, trained tau and threshold
        fn = point.fn
        node = PLIFNode(fn.tau, threshold=threshold, v_reset=fn.v_reset, surrogate=copy.deepcopy(fn.surrogate),
                        detach_reset=fn.detach_reset)
        with torch.no_grad():
            node.w.copy_(fn.w)
        return node
    if point.kind == "tssl":  # a directly trained SNN (Zhang & Li 2020, TSSL-BP): its own neurons as trained
        fn = point.fn
        return TSSLNode(fn.tau_m, fn.tau_s, threshold=threshold, warmup=fn.warmup)
    if point.kind == "softlif":  # Hunsberger: the trained soft-LIF maps onto LIF neurons exactly
        fn = point.fn
        decay = math.exp(-recipe.dt / fn.tau_rc)
        return LIFNode(1.0, amplitude=fn.amplitude / recipe.dt, tau_rc=fn.tau_rc, tau_ref=fn.tau_ref, dt=recipe.dt,
                       gain=1.0 - decay, reset="zero", v_init=recipe.v_init, synapse_decay=synapse, **corrections)
    lowered = threshold / compensation
    if recipe.neuron == "lif":
        # A ReLU layer on LIF neurons: an input at threshold fires once per (1 + refractory) steps instead of
        # every step; scaling the spikes by (1 + refractory steps) keeps that input's value (max-rate
        # matching), so rates do not shrink layer after layer.
        ref_steps = int(round(recipe.tau_ref / recipe.dt))
        return LIFNode(lowered, amplitude=threshold * (1 + ref_steps), tau_rc=recipe.tau_rc, tau_ref=recipe.tau_ref,
                       dt=recipe.dt, gain=1.0, reset=recipe.reset, v_init=recipe.v_init, synapse_decay=synapse,
                       **corrections)
    return IFNode(lowered, amplitude=threshold, reset=recipe.reset, v_init=recipe.v_init, synapse_decay=synapse,
                  signed=recipe.signed, **corrections)


def build_snn(canonical: fx.GraphModule, thresholds: dict[str, Tensor], recipe: Recipe, *,
              input_shape: tuple[int, ...], config: dict[str, Any] | None = None) -> SpikingNetwork:
    """Assemble the SNN from a canonical graph and one threshold tensor per ActPoint."""
    gm = copy.deepcopy(canonical).eval()
    dtype = next((p.dtype for p in gm.parameters()), torch.float32)
    ShapeProp(gm).propagate(torch.zeros((1,) + tuple(input_shape), dtype=dtype))
    points = act_points(gm)
    missing = [n for n in points if n not in thresholds]
    if missing:
        raise ConversionError(f"no threshold for activation layers {missing}")
    depth = neuron_depths(gm, lambda n: isinstance(gm.get_submodule(n.target), ActPoint)
                          and gm.get_submodule(n.target).kind != "output")
    out_threshold = thresholds.get(OUTPUT, torch.ones(1))
    shapes = {str(n.target): n.meta["tensor_meta"].shape for n in gm.graph.nodes
              if n.op == "call_module" and "tensor_meta" in n.meta}
    for name, p in points.items():
        if name == OUTPUT:
            continue
        # Rates fall short of the ANN's activations by a fraction that grows about linearly with depth. Each
        # layer adds the compensation its own depth step needs, so that the gain accumulated over the d layers
        # of the longest path into a neuron is 1 + c*d; a factor of 1 + c*d in every layer would compound to
        # prod_k (1 + c*k) (c=0.005: 2.5x at depth 19, 1179x at depth 55; the rates saturate).
        d, c = depth.get(name, 0), recipe.depth_compensation
        comp = (1.0 + c * d) / (1.0 + c * max(d - 1, 0))
        channels = correction_channels(shapes.get(name), thresholds[name])
        _set_module(gm, name, _make_neuron(p, thresholds[name], recipe, comp, channels))
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == OUTPUT:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    if hasattr(gm, OUTPUT):
        delattr(gm, OUTPUT)
    for name, m in list(gm.named_modules()):
        if isinstance(m, nn.MaxPool2d) and recipe.maxpool == "rate_gated":
            _set_module(gm, name, RateGatedMaxPool2d.from_maxpool(m))
        if recipe.bias == "drop" and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
            with torch.no_grad():
                m.bias.zero_()
    gm.recompile()
    if recipe.form == "weight":
        spiking_readout = recipe.readout == "spike_count"
        to_weight_form(gm, out_threshold if spiking_readout else None)
        if spiking_readout:
            out_threshold = torch.ones(1)
    if recipe.encoder == "poisson":
        encoder = PoissonEncoder(recipe.poisson_rate, recipe.seed)
    else:
        encoder = ENCODERS[recipe.encoder]()
    if recipe.readout == "spike_count":
        readout = SpikeCountReadout(out_threshold.max(), reset=recipe.reset)
    elif recipe.readout == "softmax":
        readout = SoftmaxReadout(recipe.seed)
    else:
        readout = MembraneReadout()
    cfg = dict(config or {})
    cfg.update(recipe=recipe.stored(), input_shape=list(input_shape),
               threshold_numel={n: int(t.numel()) for n, t in thresholds.items()})
    return SpikingNetwork(encoder, gm, readout, cfg)


def _first_batch(data) -> Tensor:
    for x in iterate_inputs(data, 1):
        return x
    raise InputError("calibration data is empty: pass a DataLoader, Dataset or tensor with images")


def convert(model: nn.Module, calibration_data=None, variant: str | Recipe = "rueckauer2017", *,
            stats: ActivationStats | None = None, input_shape: tuple[int, ...] | None = None,
            config: dict[str, Any] | None = None, max_batches: int | None = None, progress: bool = True,
            **overrides: Any) -> SpikingNetwork:
    """Convert a trained classifier into a spiking network.

    Args:
        model: a trained ``nn.Module`` (used in eval mode, not modified), traceable with torch.fx.
        calibration_data: DataLoader / Dataset / tensor of inputs for the activation statistics (not needed
            for ``norm="none"``/``"model"`` if ``input_shape`` is given, nor when ``stats`` is passed).
        variant: a registered variant name (see :func:`zoo.variants`) or a :class:`Recipe`.
        stats: precomputed :class:`ActivationStats` (e.g. from the pipeline's calibrate stage).
        max_batches: calibrate on at most this many batches of ``calibration_data``.
        **overrides: recipe fields to override, e.g. ``percentile=99.99, channel_wise=True``.

    The conversion (calibration included) runs on a CPU copy of ``model``, and the SNN comes back on the CPU:
    move it with ``snn.to(device)`` or let :func:`zoo.simulate` (``device=``) do it.
    """
    recipe = get_variant(variant, **overrides)
    canonical = canonicalize(model).cpu()  # a copy: conversion runs on the CPU, whatever device the model is on
    if input_shape is None:
        if calibration_data is None:
            raise ValueError("pass calibration_data or input_shape")
        input_shape = tuple(_first_batch(calibration_data).shape[1:])
    needs_data = recipe.norm in ("max", "percentile") or (recipe.readout == "spike_count" and recipe.norm != "none")
    if stats is None and needs_data:
        if calibration_data is None:
            raise ValueError(f"norm={recipe.norm!r} needs calibration_data (or precomputed stats)")
        stats = calibrate(canonical, calibration_data, max_batches=max_batches, progress=progress)
    if recipe.encoder == "poisson" and recipe.poisson_rate is None:  # the largest unclipped rate (stored resolved)
        if calibration_data is None:
            raise ValueError("poisson_rate=None sets c = 1/max|x| of the calibration images: pass calibration_data "
                             "(or a poisson_rate)")
        recipe = recipe.override(poisson_rate=1.0 / max(float(_first_batch(calibration_data).abs().max()), 1e-12))
    input_bound = recipe.input_bound
    if recipe.norm == "model" and input_bound is None:
        if recipe.encoder == "poisson":  # what the first layer receives per step: spikes of +-1/c
            input_bound = 1.0 / recipe.poisson_rate
        else:
            input_bound = float(_first_batch(calibration_data).abs().max()) if calibration_data is not None else 1.0
    thresholds = compute_thresholds(canonical, recipe, stats, input_shape=input_shape, input_bound=input_bound)
    snn = build_snn(canonical, thresholds, recipe, input_shape=input_shape, config=config)
    if recipe.correction != "none":
        if calibration_data is None:
            raise ValueError(f"correction={recipe.correction!r} fits the SNN on calibration images: pass "
                             "calibration_data (precomputed stats are not enough)")
        fit_corrections(snn, canonical, calibration_data, kind=recipe.correction,
                        timesteps=recipe.correction_timesteps, progress=progress)
    return snn


__all__ = ["convert", "build_snn", "ConversionError"]


#: calibration images a conversion keeps as its calibration tensor (the model-based input bound, calibrated
#: corrections); the activation statistics use the whole calibration split
CALIBRATION_IMAGES = 256


def convert_prepared(model: nn.Module, data, variant: str | Recipe = "rueckauer2017", *,
                     stats: ActivationStats | None = None, config: dict[str, Any] | None = None,
                     progress: bool = False, **overrides: Any) -> SpikingNetwork:
    """:func:`convert` with a prepared dataset (:class:`zoo.data.PreparedData`): what the pipeline's convert
    stage and ``zoo convert`` both run. The activation statistics come from the whole calibration split (the
    calibrate stage's file, or computed here when ``stats`` is None); the first :data:`CALIBRATION_IMAGES`
    calibration images are the calibration tensor."""
    from torch.utils.data import DataLoader

    n = min(CALIBRATION_IMAGES, len(data.calibration))
    calib = torch.stack([data.calibration[i][0] for i in range(n)])
    if stats is None:
        stats = calibrate(canonicalize(model), DataLoader(data.calibration, batch_size=256), progress=progress)
    return convert(model, calib, variant, stats=stats, config=config, progress=progress, **overrides)
