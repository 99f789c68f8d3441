"""ANN weights from a converted network, and a new ANN started from them.

A threshold-form IF network with analog input and membrane readout (``rueckauer2017``, ``low-latency``) keeps
the trained ANN's weights unchanged, batch norm folded into the convolutions: :func:`ann_from_snn` turns its
neurons back into ReLUs (and rate-gated max-pooling into max-pooling), which gives back an ANN with the trained
one's outputs. :func:`init_from_ann` starts another network of the same architecture from those weights, e.g. a
QCFS-activated one to fine-tune (``train.init_from`` in params.yaml), its thresholds set from the source's
activations.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from zoo.conversion.calibration import iterate_inputs
from zoo.conversion.graph import SYNAPTIC, ConversionError, _set_module
from zoo.spiking.layer import RateGatedMaxPool2d
from zoo.spiking.neuron import BaseNode, IFNode

INIT_PERCENTILE = 99.9


def ann_from_snn(snn) -> nn.Module:
    """The ANN inside an IF network whose weights are the trained ones (neurons -> ReLU, rate-gated max-pooling ->
    max-pooling), in eval mode: a threshold-form network (``rueckauer2017``, ``low-latency``), or one with no
    normalization (``cao2015``) when the ANN had no biases to drop. Input coding and readout do not touch the
    weights."""
    r = snn.config.get("recipe", {})
    same_weights = r.get("form") == "threshold" or r.get("norm") == "none"
    plain = (same_weights and r.get("neuron") == "if" and not r.get("depth_compensation", 0)
             and r.get("correction", "none") == "none")
    if not plain or not all(type(m) is IFNode for m in snn.neurons().values()):
        raise ConversionError(f"variant {r.get('name')!r} is not an IF network with the ANN's weights (threshold "
                              "form, or no normalization), so its weights are not the ANN's; take the checkpoint of "
                              "a variant such as low-latency or rueckauer2017")
    if r.get("bias") == "drop" and any(m.bias is not None for m in snn.body.modules() if isinstance(m, SYNAPTIC)):
        raise ConversionError(f"variant {r.get('name')!r} dropped the ANN's biases (or its folded batch norm), so "
                              "its weights are not the ANN's; take the checkpoint of a variant such as low-latency "
                              "or rueckauer2017")
    body = copy.deepcopy(snn.body)
    for name, m in list(body.named_modules()):
        if isinstance(m, BaseNode):
            _set_module(body, name, nn.ReLU())
        elif isinstance(m, RateGatedMaxPool2d):
            _set_module(body, name, nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode))
    return body.eval()


def _synaptic(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SYNAPTIC)}


def _activations(model: nn.Module, kinds: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kinds) or type(m).__name__ in ("QCFS", "SoftLIF")]


@torch.no_grad()
def _act_percentiles(model: nn.Module, data, q: float, max_images: int) -> list[Tensor]:
    """The q-th percentile of each activation module's positive outputs, per call, in call order."""
    acts = _activations(model, (nn.ReLU,))
    outs: dict[int, list[Tensor]] = {}
    order: list[int] = []

    def hook(mod, inp, out):
        k = id(mod)
        if k not in outs:
            outs[k], _ = [], order.append(k)
        o = out.detach().float().flatten()
        outs[k].append(o[o > 0][::max(1, o.numel() // 100_000)])

    handles = [m.register_forward_hook(hook) for m in acts]
    try:
        n = 0
        for x in iterate_inputs(data, 128):
            model(x[: max_images - n].float())
            n += min(len(x), max_images - n)
            if n >= max_images:
                break
    finally:
        for h in handles:
            h.remove()
    result = []
    for k in order:
        v = torch.cat(outs[k])
        result.append(torch.quantile(v[:1_000_000], q / 100.0) if v.numel() else torch.tensor(1.0))
    return result


@torch.no_grad()
def init_from_ann(target: nn.Module, source: nn.Module, data=None, *, percentile: float = INIT_PERCENTILE,
                  max_images: int = 512) -> dict[str, int]:
    """Copy ``source``'s Conv/Linear weights and biases into ``target`` by module path, and set ``target``'s
    QCFS thresholds to the ``percentile`` of ``source``'s activations on ``data`` (layer by layer, in call order).

    ``target`` must have the same synaptic layers as ``source`` (same paths and shapes), and no batch norm unless
    the source is bias-free (so none was folded into it); anything else is an error that names the layer.
    Returns counts of what was set.
    """
    src, dst = _synaptic(source), _synaptic(target)
    if set(src) != set(dst):
        raise ValueError(f"init_from: the layers differ; only in the source: {sorted(set(src) - set(dst))[:5]}, "
                         f"only in the target: {sorted(set(dst) - set(src))[:5]}. Build the target with the "
                         "source's architecture and width, and bn=False (the source's batch norms are folded)")
    # a source with biases may hold folded batch norms, which a target's own batch norms would apply twice; a
    # bias-free source had none, and the target's fresh batch norms are then part of what it learns
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in target.modules()) \
            and any(m.bias is not None for m in src.values()):
        raise ValueError("init_from: the source's batch norms are folded into its weights; build the target with "
                         "bn=False (arch_kwargs) so that it computes what the source computes")
    for name, d in dst.items():
        s = src[name]
        if s.weight.shape != d.weight.shape:
            raise ValueError(f"init_from: layer {name!r} is {tuple(s.weight.shape)} in the source, "
                             f"{tuple(d.weight.shape)} in the target")
        if d.bias is None and s.bias is not None and bool(s.bias.any()):
            raise ValueError(f"init_from: layer {name!r} has a bias in the source (folded batch norm) but none in "
                             "the target; build the target with bias=True")
        d.weight.copy_(s.weight)
        if d.bias is not None:
            d.bias.copy_(s.bias if s.bias is not None else torch.zeros_like(d.bias))
    qcfs = [m for m in target.modules() if type(m).__name__ == "QCFS"]
    if qcfs:
        if data is None:
            raise ValueError("init_from: a QCFS target's thresholds start from the source's activations; pass data")
        was = target.training
        target.eval()
        order = _call_order(target, qcfs, data)
        target.train(was)
        ths = _act_percentiles(source.eval(), data, percentile, max_images)
        if len(ths) != len(order):
            raise ValueError(f"init_from: the source has {len(ths)} activation layers, the target {len(order)}")
        for m, th in zip(order, ths):
            m.threshold.fill_(float(th))
    return {"layers": len(dst), "thresholds": len(qcfs)}


@torch.no_grad()
def _call_order(model: nn.Module, mods: list[nn.Module], data) -> list[nn.Module]:
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: order.append(mod) if mod not in order else None)
               for m in mods]
    try:
        for x in iterate_inputs(data, 2):
            model(x[:2].float())
            break
    finally:
        for h in handles:
            h.remove()
    return order


__all__ = ["ann_from_snn", "init_from_ann"]
