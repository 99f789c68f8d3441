"""Spiking layers that are not neurons: edge scaling, spiking max-pooling, input encoders and readouts.

All work on the multi-step layout of :mod:`zoo.spiking.neuron` (``[T*B, ...]`` with ``steps``/``batch`` set by
the network) and carry their state between chunks until ``reset_state()``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.spiking.neuron import IFNode, _channel_view


class Scale(nn.Module):
    """Multiply by a per-layer or per-channel factor (channel dim 1).

    In the weight-normalized form this is what is left of normalization on an edge that has no synaptic
    layer to fold into, e.g. the identity shortcut of a residual block (Hu et al.'s shortcut normalization).
    """

    def __init__(self, factor: Tensor | float = 1.0) -> None:
        super().__init__()
        factor = torch.as_tensor(factor)
        self.register_buffer("factor", (factor if factor.is_floating_point() else factor.float()).reshape(-1))

    def forward(self, x: Tensor) -> Tensor:
        return x * _channel_view(self.factor, x.ndim).to(x.dtype)

    def extra_repr(self) -> str:
        f = self.factor
        return f"factor={f.item():.4g}" if f.numel() == 1 else f"factor=[{f.numel()} channels]"


class _Stateful(nn.Module):
    steps = 1
    batch: int | None = None

    def reset_state(self) -> None:  # pragma: no cover - overridden
        pass

    def _time_view(self, x: Tensor) -> Tensor:
        T = self.steps
        B = self.batch if self.batch is not None else x.shape[0] // T
        if x.shape[0] == B and T > 1:  # constant over the chunk
            return x.unsqueeze(0).expand((T,) + tuple(x.shape))
        return x.reshape((T, B) + tuple(x.shape[1:]))


class RateGatedMaxPool2d(_Stateful):
    """Spiking max-pooling gated by firing rates (Rueckauer et al. 2017).

    Each window passes the spikes of its leading neuron, the one that has fired most so far: an output spike
    is emitted when the window's largest spike count grows. The output count therefore equals the largest
    input count at every step (a leader change alone emits nothing), so the output rate converges to the
    maximum of the input rates, as max-pooling does in the ANN. Spikes keep their value (θ or 1).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.counts: Tensor | None = None
        self.leader: Tensor | None = None

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)

    @classmethod
    def from_maxpool(cls, m: nn.MaxPool2d) -> "RateGatedMaxPool2d":
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)

    def reset_state(self) -> None:
        self.counts = None
        self.leader = None

    def forward(self, x: Tensor) -> Tensor:
        xs = self._time_view(x)
        counts = self.counts if self.counts is not None else torch.zeros_like(xs[0])
        leader = self.leader if self.leader is not None else self._pool(counts)
        outs = []
        for t in range(xs.shape[0]):
            counts = counts + (xs[t] != 0).to(xs.dtype)
            new_leader = self._pool(counts)
            outs.append((new_leader - leader) * self._pool(xs[t]))
            leader = new_leader
        self.counts, self.leader = counts, leader
        return torch.stack(outs).flatten(0, 1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


# ---------------------------------------------------------------------------------------------- encoders
class AnalogEncoder(_Stateful):
    """Analog input (Rueckauer 2017): the image is a constant current into the first layer.

    Returns the image unchanged (``[B, ...]``); the first neurons broadcast it over the chunk, so the first
    layer is computed once per chunk (its cost is still counted as MACs at every timestep).
    """

    analog = True

    def forward(self, x: Tensor) -> Tensor:
        return x


class PoissonEncoder(_Stateful):
    """Poisson rate coding (Cao et al. 2015): at each step a spike with probability ``c*|x|``, sign kept.

    The spike value is ``sign(x)/c`` so that its expectation is ``x`` where ``c*|x| <= 1``. Seeded: the same
    seed gives the same spike trains.
    """

    analog = False

    def __init__(self, rate: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if rate <= 0:
            raise ValueError(f"Poisson rate c must be > 0, got {rate}")
        self.rate, self.seed = float(rate), int(seed)
        self.generator: torch.Generator | None = None

    def reset_state(self) -> None:
        self.generator = None

    def forward(self, x: Tensor) -> Tensor:
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        T = self.steps
        p = (self.rate * x.abs()).clamp(max=1.0)
        u = torch.rand((T,) + tuple(x.shape), generator=self.generator, device=x.device, dtype=x.dtype)
        spikes = (u < p).to(x.dtype) * torch.sign(x) / self.rate
        return spikes.flatten(0, 1)


# ---------------------------------------------------------------------------------------------- readouts
class Readout(_Stateful):
    """Turns the output layer's current ``[T*B, K]`` into cumulative class scores ``[T, B, K]``.

    ``scores[t]`` is what the readout has accumulated after step ``t`` (since the last reset); the predicted
    class at T is ``scores[T-1].argmax(-1)``.
    """

    kind = "base"

    def __init__(self) -> None:
        super().__init__()
        self.total: Tensor | None = None
        self.elapsed = 0

    def reset_state(self) -> None:
        self.total, self.elapsed = None, 0

    def _accumulate(self, per_step: Tensor) -> Tensor:
        scores = per_step.cumsum(0)
        if self.total is not None:
            scores = scores + self.total
        self.total = scores[-1]
        self.elapsed += per_step.shape[0]
        return scores

    def estimate(self) -> Tensor | None:
        """Time-averaged output, comparable with the ANN's logits (membrane) or softmax (counts)."""
        return None if self.total is None else self.total / max(self.elapsed, 1)


class MembraneReadout(Readout):
    """Accumulated potential of the non-spiking output layer (Rueckauer 2017's third option)."""

    kind = "membrane"

    def forward(self, x: Tensor) -> Tensor:
        return self._accumulate(self._time_view(x))


class SpikeCountReadout(Readout):
    """Spiking output layer; the class is the neuron with most spikes (Cao 2015, Diehl 2015)."""

    kind = "spike_count"

    def __init__(self, threshold: Tensor | float = 1.0, reset: str = "zero") -> None:
        super().__init__()
        self.neuron = IFNode(threshold, amplitude=1.0, reset=reset)

    def reset_state(self) -> None:
        super().reset_state()
        self.neuron.reset_state()

    def forward(self, x: Tensor) -> Tensor:
        self.neuron.steps, self.neuron.batch = self.steps, self.batch
        spikes = self.neuron(x)
        return self._accumulate(self._time_view(spikes))


class SoftmaxReadout(Readout):
    """Spiking softmax (Rueckauer 2017): each step every image emits one output spike, drawn from the
    softmax of the output layer's input current; the class is the neuron with most spikes. Seeded."""

    kind = "softmax"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self.generator: torch.Generator | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self.generator = None

    def forward(self, x: Tensor) -> Tensor:
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        z = self._time_view(x)
        T, B, K = z.shape
        p = torch.softmax(z.reshape(T * B, K).float(), dim=-1)
        idx = torch.multinomial(p, 1, generator=self.generator).squeeze(1)
        spikes = F.one_hot(idx, K).to(x.dtype).reshape(T, B, K)
        return self._accumulate(spikes)


READOUTS = {"membrane": MembraneReadout, "spike_count": SpikeCountReadout, "softmax": SoftmaxReadout}
ENCODERS = {"analog": AnalogEncoder, "poisson": PoissonEncoder}

__all__ = [
    "Scale", "RateGatedMaxPool2d", "AnalogEncoder", "PoissonEncoder", "Readout", "MembraneReadout",
    "SpikeCountReadout", "SoftmaxReadout", "READOUTS", "ENCODERS",
]
