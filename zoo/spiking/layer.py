"""Spiking layers that are not neurons: edge scaling, spiking max-pooling, input encoders and readouts.

All work on the multi-step layout of :mod:`zoo.spiking.neuron` (``[T*B, ...]`` with ``steps``/``batch`` set by
the network) and carry their state between chunks until ``reset_state()``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.spiking.neuron import IFNode, _apply_to_state, _channel_view


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

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        _apply_to_state(self, fn)
        return self

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
    maximum of the input rates, as max-pooling does in the ANN. Spikes keep their value (θ or 1). A negative
    spike (signed neurons) lowers its neuron's count, and the window's output follows its largest count down.
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
            counts = counts + torch.sign(xs[t])  # signed neurons' negative spikes take a spike back
            new_leader = self._pool(counts)
            outs.append((new_leader - leader) * self._pool(xs[t].abs()))
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


_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2**32`` for int64 tensors holding 32-bit values, without int64 overflow."""
    hi = (x >> 16).mul_(c).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return (x & 0xFFFF).mul_(c).add_(hi).bitwise_and_(_MASK32)


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finalizer (Wellons' ``lowbias32``): every input bit affects every output bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x.bitwise_xor_(x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x.bitwise_xor_(x >> 16)


def image_keys(x: Tensor) -> Tensor:
    """One 32-bit key ``[B]`` per image, a hash of the image's float32 values and nothing else.

    The random parts of an SNN (Poisson input, spiking softmax) draw from these keys, so an image's spike
    trains do not depend on the batch it comes in, its position there, the chunking or the DDP rank.
    """
    bits = x.detach().reshape(x.shape[0], -1).to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    pos = _mix32(torch.arange(bits.shape[1], device=x.device, dtype=torch.int64))
    return _mix32(_mix32((bits & _MASK32) ^ pos).sum(1) & _MASK32)


def counter_uniforms(keys: Tensor, seed: int, first_step: int, steps: int, n: int) -> Tensor:
    """Counter-based uniforms ``[steps, B, n]`` in [0, 1): draw (step, image, i) is a hash of the image's key,
    the seed, the step's index and i, so any split of the steps or the images draws the same numbers."""
    keys = _mix32(keys ^ (_mix32(torch.tensor(int(seed) & _MASK32)).item()))
    pos = _mul32(torch.arange(n, device=keys.device, dtype=torch.int64), 0x9E3779B1)
    out = []
    for t in range(first_step, first_step + steps):
        step_keys = _mix32(keys ^ ((t + 1) * 0x85EBCA77 & _MASK32))
        h = _mix32(step_keys[:, None] ^ pos[None, :])
        out.append((h >> 8).to(torch.float32).mul_(2.0 ** -24))
    return torch.stack(out)


#: Which random draws the stochastic layers (Poisson input, spiking softmax) make: :func:`counter_uniforms`
#: with :func:`image_keys`, version 1. The evaluate stage records it beside every figure it measures
#: (``SpikingNetwork.draws``), so ``zoo evaluate`` replays a stochastic SNN's figure on its own images only
#: where it was drawn the same way. Change it whenever the draws for a given seed and image change.
DRAWS = "counter-lowbias32/1"


class PoissonEncoder(_Stateful):
    """Poisson rate coding (Cao et al. 2015): at each step a spike with probability ``c*|x|``, sign kept.

    The spike value is ``sign(x)/c`` so that its expectation is ``x`` where ``c*|x| <= 1``.

    The random numbers are counter-based (:func:`counter_uniforms`): the draw for (image, step, pixel) is a hash
    of the seed, the image's own values, the step's index since ``reset_state()`` and the pixel's index. An
    image's spike train is therefore a function of the seed and the image alone, whatever the batch it comes
    in, its position in the batch, the chunking of the steps or the process (DDP rank) that simulates it.
    """

    analog = False
    stochastic = True  # draws random numbers (see DRAWS)

    def __init__(self, rate: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if rate <= 0:
            raise ValueError(f"Poisson rate c must be > 0, got {rate}")
        self.rate, self.seed = float(rate), int(seed)
        self.elapsed = 0

    def reset_state(self) -> None:
        self.elapsed = 0

    def uniforms(self, x: Tensor, steps: int) -> Tensor:
        """The draws ``[steps, B, ...]`` in [0, 1) for the next ``steps`` steps of the images ``x``."""
        u = counter_uniforms(image_keys(x), self.seed, self.elapsed, steps, x[0].numel())
        self.elapsed += steps
        return u.reshape((steps,) + tuple(x.shape)).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        p = (self.rate * x.abs()).clamp(max=1.0)
        u = self.uniforms(x, self.steps)
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
    softmax of the output layer's input current; the class is the neuron with most spikes.

    Seeded and counter-based like :class:`PoissonEncoder`: the network sets ``keys`` (:func:`image_keys` of
    its input images) before each call, so the draws do not depend on the batch or the chunking. Without
    ``keys`` (the readout used on its own) an image's key is its position in the batch.
    """

    kind = "softmax"
    keyed = True
    stochastic = True  # draws random numbers (see DRAWS)

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self.keys: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        z = self._time_view(x)
        T, B, K = z.shape
        keys = self.keys if self.keys is not None and self.keys.shape[0] == B else \
            torch.arange(B, device=x.device, dtype=torch.int64)
        # salted seed: with the encoder's seed a Poisson net's output draws would be its first pixel's draws
        u = counter_uniforms(keys.to(x.device), self.seed ^ 0x5F3759DF, self.elapsed, T, 1)  # [T, B, 1]
        cdf = torch.softmax(z.float(), dim=-1).cumsum(-1)
        idx = (cdf < u * cdf[..., -1:]).sum(-1).clamp(max=K - 1)  # inverse-CDF sampling
        spikes = F.one_hot(idx, K).to(x.dtype)
        return self._accumulate(spikes)


READOUTS = {"membrane": MembraneReadout, "spike_count": SpikeCountReadout, "softmax": SoftmaxReadout}
ENCODERS = {"analog": AnalogEncoder, "poisson": PoissonEncoder}

__all__ = [
    "Scale", "RateGatedMaxPool2d", "AnalogEncoder", "PoissonEncoder", "Readout", "MembraneReadout",
    "SpikeCountReadout", "SoftmaxReadout", "READOUTS", "ENCODERS",
]
