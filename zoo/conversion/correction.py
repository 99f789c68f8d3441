"""Calibrated conversion: per-channel corrections fitted on calibration data (Li et al. 2021, ICML, "A free
lunch from ANN: towards efficient, accurate spiking neural networks calibration").

In the first steps of a simulation a layer's mean output differs from its ANN activation by an error that
depends on the channel (the initial membranes, the uneven arrival of spikes). Layer by layer from the input,
:func:`fit_corrections` simulates the calibration images for ``correction_timesteps`` steps, compares each
channel's mean output (rate x amplitude, over images and positions) with the ANN's mean activation, and adds
the difference ``e`` to the layer as

* ``potential``: ``e * T`` to the initial membrane potential (``v_offset``), which moves the output after
  ``T`` steps by ``e`` and fades at longer simulations;
* ``bias``: ``e`` to the input current at every step (``current``).

Spikes are discrete, so a channel's output does not move by exactly ``e``: each layer takes ``iterations`` more
steps, each scaled by the change per unit the previous one measured (a secant step per channel), and keeps each
channel's best. Later layers are fitted with the earlier ones already corrected, so each corrects what reaches
it. The SNN's structure does not change: the corrections are buffers of its neurons, saved with the checkpoint.
"""
from __future__ import annotations

import torch
from torch import Tensor, fx
from tqdm.auto import tqdm

from zoo.conversion.calibration import iterate_inputs
from zoo.conversion.graph import act_points
from zoo.spiking.network import SpikingNetwork

DEFAULT_IMAGES = 512
ITERATIONS = 3


def _channel_mean(y: Tensor) -> Tensor:
    """Mean over every dimension but the channels (dim 1): ``[C]``."""
    y = y.float()
    return y.transpose(0, 1).reshape(y.shape[1], -1).mean(1) if y.ndim > 1 else y.mean().reshape(1)


@torch.no_grad()
def _ann_means(canonical: fx.GraphModule, xs: list[Tensor]) -> dict[str, Tensor]:
    points = {n: p for n, p in act_points(canonical).items() if p.kind != "output"}
    sums: dict[str, Tensor] = {}

    def hook(name):
        def f(mod, inp, out):
            sums[name] = sums.get(name, 0) + _channel_mean(out) * out.shape[0]
        return f

    handles = [p.register_forward_hook(hook(n)) for n, p in points.items()]
    try:
        for x in xs:
            canonical(x)
    finally:
        for h in handles:
            h.remove()
    n = sum(len(x) for x in xs)
    return {k: v / n for k, v in sums.items()}


@torch.no_grad()
def fit_corrections(snn: SpikingNetwork, canonical: fx.GraphModule, calibration_data, *, kind: str, timesteps: int,
                    max_images: int = DEFAULT_IMAGES, batch_size: int = 128, iterations: int = ITERATIONS,
                    progress: bool = True) -> dict[str, Tensor]:
    """Fit the ``kind`` ("potential" | "bias") correction of every hidden neuron layer of ``snn`` (in place) on
    up to ``max_images`` calibration images; returns the per-channel output errors ``e`` that were corrected."""
    if kind not in ("potential", "bias"):
        raise ValueError(f"correction kind must be 'potential' or 'bias', got {kind!r}")
    if timesteps < 1:
        raise ValueError(f"correction_timesteps must be >= 1, got {timesteps}")
    xs, n = [], 0
    for x in iterate_inputs(calibration_data, batch_size):
        x = x[: max_images - n].float()
        xs.append(x)
        n += len(x)
        if n >= max_images:
            break
    if n == 0:
        raise ValueError("calibrated conversion needs calibration images; the calibration data is empty")
    targets = _ann_means(canonical.eval(), xs)
    buffer = "v_offset" if kind == "potential" else "current"
    neurons = snn.neurons()
    missing = [name for name, m in neurons.items() if buffer not in m._buffers or name not in targets]
    if missing:
        raise ValueError(f"layers {missing} have no {buffer!r} to correct: build the SNN from a recipe with "
                         f"correction={kind!r}")
    snn.eval()
    errors: dict[str, Tensor] = {}
    scale = timesteps if kind == "potential" else 1
    for name, node in tqdm(list(neurons.items()), desc=f"{kind} correction", disable=not progress, leave=False):
        buf = getattr(node, buffer)
        amp = node.amplitude.float()
        target = torch.minimum(targets[name].float(), amp)  # an IF layer's output is at most its amplitude
        err = target - _mean_output(snn, node, xs, timesteps)
        errors[name] = err
        best_err, best_buf = err.abs(), buf.clone()
        gain = torch.ones_like(err)
        for _ in range(iterations):
            step = err / gain
            buf.add_(step * scale)
            new_err = target - _mean_output(snn, node, xs, timesteps)
            moved = step.abs() > 1e-9
            gain = torch.where(moved, ((err - new_err) / step.where(moved, 1.0)).clamp(0.25, 4.0), gain)
            err = new_err
            better = err.abs() < best_err
            best_err, best_buf = torch.where(better, err.abs(), best_err), torch.where(better, buf, best_buf)
        buf.copy_(best_buf)
    return errors


def _mean_output(snn: SpikingNetwork, node, xs: list[Tensor], timesteps: int) -> Tensor:
    """``node``'s mean output (rate x amplitude) per channel after ``timesteps`` steps of the images ``xs``."""
    node.count_spikes = True
    total, n = 0.0, 0
    try:
        for x in xs:
            snn.reset_state()
            snn(x, steps=timesteps)
            total = total + _channel_mean(node.rate_sum / timesteps) * len(x)
            n += len(x)
    finally:
        node.count_spikes = False
        snn.reset_state()
    return total / n * node.amplitude.float()


def correction_channels(shape: torch.Size | None, threshold: Tensor) -> int:
    """How many channels a layer's correction has: its output's dim 1, else its thresholds' count."""
    return int(shape[1]) if shape is not None and len(shape) > 1 else int(threshold.numel())


__all__ = ["fit_corrections", "correction_channels", "DEFAULT_IMAGES"]
