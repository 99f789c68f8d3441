"""The spiking network: an encoder, a converted body and a readout, simulated in chunks of timesteps."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from zoo.spiking.layer import DRAWS, Readout, image_keys
from zoo.spiking.neuron import BaseNode


@contextlib.contextmanager
def exact_float32(enabled: bool = True) -> Iterator[None]:
    """cuDNN convolutions and cuBLAS matmuls in IEEE float32 inside the block, not TF32, then the previous
    settings again. torch runs float32 convolutions on CUDA as TF32 by default (10-bit mantissa): enough for an
    ANN, not for neurons that compare membrane potentials with thresholds, where it flips spikes that CPU and
    GPU would otherwise agree on. A no-op with ``enabled=False``."""
    if not enabled:
        yield
        return
    conv, mm = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    old = (conv.fp32_precision, mm.fp32_precision)
    conv.fp32_precision, mm.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, mm.fp32_precision = old


class SpikingNetwork(nn.Module):
    """A converted SNN.

    ``snn(x, steps=T)`` feeds the images ``x`` ``[B, ...]`` for ``T`` more timesteps (continuing from the
    current state) and returns the readout's cumulative class scores ``[T, B, K]``. Call :meth:`reset_state`
    before a new batch of images. ``body`` is a ``torch.fx.GraphModule`` that maps ``[T*B, ...]`` input
    currents/spikes to the output layer's current ``[T*B, K]`` (or ``[B, K]`` if it is constant).

    ``config`` holds everything needed to rebuild it (architecture, recipe, input shape); see
    :mod:`zoo.serialization`.
    """

    def __init__(self, encoder: nn.Module, body: nn.Module, readout: Readout, config: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder
        self.body = body
        self.readout = readout
        self.config: dict[str, Any] = dict(config or {})
        self._stateful: list[nn.Module] | None = None
        self.step_offset = 0  # first step of the sub-chunk being computed (for measurement hooks)

    # ------------------------------------------------------------------------------------------ state
    def stateful_modules(self) -> list[nn.Module]:
        if self._stateful is None:
            self._stateful = [m for m in self.modules() if m is not self and hasattr(m, "reset_state")]
        return self._stateful

    def neurons(self) -> dict[str, BaseNode]:
        """Hidden-layer neurons by module path (the readout's own neuron is not included)."""
        return {n: m for n, m in self.body.named_modules() if isinstance(m, BaseNode)}

    def reset_state(self) -> None:
        for m in self.stateful_modules():
            m.reset_state()

    #: most images (timesteps x batch) one call of the body processes; a chunk of T steps is split into
    #: sub-chunks of ``max_images_per_call // B`` steps so activations stay in the CPU caches. None: no limit.
    max_images_per_call: int | None = 128

    def forward(self, x: Tensor, steps: int = 1) -> Tensor:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        B = x.shape[0]
        limit = self.max_images_per_call
        n = steps if not limit else max(1, min(steps, limit // B))
        keyed = [m for m in self.stateful_modules() if getattr(m, "keyed", False)]
        if keyed:  # per-image keys for counter-based random draws (spiking softmax)
            keys = image_keys(x)
            for m in keyed:
                m.keys = keys
        outs, done = [], 0
        with exact_float32(x.is_cuda):
            while done < steps:
                k = min(n, steps - done)
                self.step_offset = done
                for m in self.stateful_modules():
                    m.steps, m.batch = k, B
                outs.append(self.readout(self.body(self.encoder(x))))
                done += k
        self.step_offset = 0
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @torch.no_grad()
    def run(self, x: Tensor, timesteps: int, chunk: int = 32) -> Tensor:
        """Reset, simulate ``timesteps`` steps in chunks and return the final cumulative scores ``[B, K]``."""
        self.reset_state()
        done, scores = 0, None
        while done < timesteps:
            n = min(chunk, timesteps - done)
            scores = self(x, steps=n)[-1]
            done += n
        return scores

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, BaseNode]]:
        """Record the binary spike trains of every hidden neuron layer (``node.recorded``)."""
        nodes = self.neurons()
        for n in nodes.values():
            n.record, n.recorded = True, []
        try:
            yield nodes
        finally:
            for n in nodes.values():
                n.record = False

    @property
    def draws(self) -> str | None:
        """:data:`zoo.spiking.layer.DRAWS` where a part of the network draws random numbers (Poisson input,
        spiking softmax), else None: its outputs are then a function of its weights and its images alone."""
        return DRAWS if any(getattr(m, "stochastic", False) for m in self.modules()) else None

    @property
    def timesteps(self) -> list[int]:
        from zoo.conversion.variants import DEFAULT_TIMESTEPS

        return list(self.config.get("recipe", {}).get("timesteps", DEFAULT_TIMESTEPS))

    def extra_repr(self) -> str:
        r = self.config.get("recipe", {})
        return f"variant={r.get('name', '?')}, arch={self.config.get('arch', '?')}"


def multi_step(body: nn.Module, x: Tensor, timesteps: int) -> Tensor:
    """Run ``body``, a network whose activations are spiking neurons (e.g. ``timm.create_model("plif_convnet")``),
    for ``timesteps`` steps of the static images ``x`` ``[B, ...]`` from the reset state, and return its output
    averaged over the steps ``[B, K]``: the class scores a directly trained SNN learns from. The whole chunk is
    one call (neurons see ``[T*B, ...]``, BatchNorm normalizes over time and batch, SpikingJelly's multi-step
    mode), and autograd flows through time."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    B = x.shape[0]
    for m in body.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()
            m.steps, m.batch = timesteps, B
    y = body(x)
    if y.shape[0] == B and timesteps > 1:  # no neuron on the way: a constant output
        return y
    return y.reshape((timesteps, B) + tuple(y.shape[1:])).mean(0)


class MultiStep(nn.Module):
    """``body`` as a classifier of static images: ``MultiStep(body, T)(x) == multi_step(body, x, T)``."""

    def __init__(self, body: nn.Module, timesteps: int) -> None:
        super().__init__()
        self.body, self.timesteps = body, int(timesteps)

    def forward(self, x: Tensor) -> Tensor:
        return multi_step(self.body, x, self.timesteps)


def reset_net(net: nn.Module) -> None:
    """Reset the state of every stateful module in ``net`` (SpikingJelly's ``functional.reset_net``)."""
    for m in net.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()


__all__ = ["SpikingNetwork", "MultiStep", "multi_step", "reset_net", "exact_float32"]
