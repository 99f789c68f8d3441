"""Spiking neurons (multi-step).

Every neuron processes a chunk of ``T`` timesteps at once. Its input is the synaptic current of the chunk,
flattened to ``[T*B, ...]`` (the layout convolutions see), or ``[B, ...]`` for a current that is constant over
the chunk (analog input into the first layer). State (membrane potential, refractory time, synaptic trace) is
carried from one chunk to the next until :meth:`reset_state`, so a run of T=1024 steps fits in memory.

The network sets ``steps`` (T of the chunk) and ``batch`` (B) on every stateful module before each chunk;
:class:`zoo.spiking.network.SpikingNetwork` does this for you.

Four neuron models:

* :class:`IFNode` — integrate-and-fire (Diehl 2015, Rueckauer 2017): ``v += I``; a spike when ``v >= θ``;
  reset to zero or by subtraction of θ.
* :class:`LIFNode` — leaky integrate-and-fire with refractory period (Hunsberger & Eliasmith 2016):
  ``v = decay * v + gain * I`` with ``decay = exp(-dt/τ_rc)``, no integration for ``τ_ref`` after a spike.
* :class:`PLIFNode` — parametric LIF for direct training (Fang et al. 2021):
  ``H = V + (X - (V - V_reset)) / τ`` with a learnable ``1/τ = sigmoid(w)``, a spike when ``H >= θ`` and a
  hard reset to ``V_reset``. The spike is a surrogate function (:mod:`zoo.spiking.surrogate`): the exact
  step forward, a smooth derivative backward, so a loss back-propagates through time to the weights and to
  ``w``. It builds its outputs without in-place updates (autograd through the chunk and, until the state is
  reset or :meth:`PLIFNode.detach_state` is called, across chunks) and runs under ``torch.no_grad`` as well.
* :class:`TSSLNode` — LIF with a first-order synaptic response for TSSL-BP (Zhang & Li 2020): its output is the
  post-synaptic potential of its spikes, and its backward pass follows the spike times (:mod:`zoo.spiking.tssl`).

IF and LIF neurons emit spikes of value ``amplitude`` (``θ`` in the threshold-balanced form, so the next layer sees
real units; 1 in the weight-normalized form) and can pass them through an exponential synaptic filter. A calibrated
conversion (Li et al. 2021) gives a layer per-channel corrections: ``v_offset``, added to the initial membrane
potential, or ``current``, added to the input at every step.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.spiking.surrogate import ATan, Surrogate
from zoo.spiking.tssl import tssl_chunk

RESETS = ("subtract", "zero")
# A neuron fires when v >= θ·(1 - TIE). In exact arithmetic the threshold-balanced and the weight-normalized
# forms integrate identical membrane potentials (up to the factor θ); in floating point the two forms round
# differently, and a potential that sits exactly on the threshold in one form may land one ulp below it in
# the other. A relative tolerance far above rounding error (float64) and far below any dynamic effect makes
# both forms take the same decision on such exact ties.
TIE = 2.0 ** -30


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """Shape a per-layer (numel 1) or per-channel ([C]) parameter to broadcast over ``[N, C, ...]``."""
    if t.numel() == 1:
        return t.reshape(())
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def _apply_to_state(module: nn.Module, fn) -> None:
    """Apply ``Module._apply``'s ``fn`` (``.to(device)``, ``.half()``, ...) to the simulation state a module keeps
    in plain attributes (membrane potentials, traces, counts, keys), as it is to parameters and buffers: a network
    moved to another device between two chunks carries on there instead of mixing devices."""
    for k, v in list(vars(module).items()):
        if isinstance(v, Tensor):
            setattr(module, k, fn(v))
        elif isinstance(v, list) and v and all(isinstance(t, Tensor) for t in v):
            setattr(module, k, [fn(t) for t in v])


class BaseNode(nn.Module):
    """Common state handling and bookkeeping for spiking neurons."""

    def __init__(
        self,
        threshold: Tensor | float = 1.0,
        *,
        amplitude: Tensor | float | None = None,
        reset: str = "subtract",
        v_init: float = 0.0,
        synapse_decay: float | None = None,
        v_offset: Tensor | None = None,
        current: Tensor | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__()
        if signed and reset != "subtract":
            raise ValueError("signed neurons take a spike back by adding θ, the inverse of a reset by subtraction; "
                             "use reset='subtract'")
        self.signed = bool(signed)
        if reset not in RESETS:
            raise ValueError(f"reset={reset!r} is not valid; choose one of {RESETS}")
        threshold = torch.as_tensor(threshold, dtype=torch.float32).reshape(-1)
        amplitude = threshold.clone() if amplitude is None else torch.as_tensor(amplitude, dtype=torch.float32).reshape(-1)
        self.register_buffer("threshold", threshold)
        self.register_buffer("amplitude", amplitude)
        # corrections exist only where a recipe asks for them, so that other checkpoints keep their tensors
        if v_offset is not None:
            self.register_buffer("v_offset", torch.as_tensor(v_offset, dtype=torch.float32).reshape(-1))
        if current is not None:
            self.register_buffer("current", torch.as_tensor(current, dtype=torch.float32).reshape(-1))
        self.reset = reset
        self.v_init = float(v_init)
        self.synapse_decay = synapse_decay
        # set by the network before each chunk
        self.steps = 1
        self.batch: int | None = None
        # optional recording of binary spikes (tests, diagnostics) and spike counting (measurement)
        self.record = False
        self.recorded: list[Tensor] = []
        self.count_spikes = False
        self.spike_counts: Tensor | None = None  # [steps] spikes summed over batch and neurons, per step
        self.rate_sum: Tensor | None = None  # spikes summed over time, per neuron, [B, ...]
        self._state_init()

    def _state_init(self) -> None:
        self.v: Tensor | None = None
        self.trace: Tensor | None = None
        self.count: Tensor | None = None  # signed neurons: net spikes emitted so far

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        _apply_to_state(self, fn)
        return self

    def reset_state(self) -> None:
        self._state_init()
        self.recorded = []
        self.spike_counts = None
        self.rate_sum = None

    def extra_repr(self) -> str:
        th = self.threshold
        th_s = f"{th.item():.4g}" if th.numel() == 1 else f"[{th.numel()} channels]"
        return f"threshold={th_s}, reset={self.reset}, v_init={self.v_init}" + (", signed" if self.signed else "")

    # -- layout helpers -------------------------------------------------------------------------------
    def _split_time(self, x: Tensor) -> tuple[Tensor, bool]:
        """Return the input as ``[T, B, ...]`` (or ``[B, ...]`` if constant) and whether it is constant."""
        T = self.steps
        B = self.batch if self.batch is not None else x.shape[0] // T
        if x.shape[0] == T * B and not (T > 1 and x.shape[0] == B):
            return x.reshape((T, B) + tuple(x.shape[1:])), False
        if x.shape[0] == B:
            return x, True
        raise RuntimeError(
            f"{type(self).__name__} got a batch of {x.shape[0]} but the network runs T={T} steps of batch {B}"
        )

    def _finish(self, spikes: Tensor) -> Tensor:
        """Record/count binary spikes ``[T, B, ...]``, scale by amplitude, filter, flatten to ``[T*B, ...]``."""
        if self.record:
            self.recorded.append(spikes.detach().clone())
        if self.count_spikes:  # spike events: a negative spike is one too
            per_step = (spikes.abs() if self.signed else spikes).reshape(spikes.shape[0], -1).sum(1)
            summed = spikes.sum(0)
            self.spike_counts = per_step if self.spike_counts is None else torch.cat([self.spike_counts, per_step])
            self.rate_sum = summed if self.rate_sum is None else self.rate_sum + summed
        amp = _channel_view(self.amplitude, spikes.ndim - 1).to(spikes.dtype)
        out = spikes.mul_(amp)  # in place: the binary spikes were recorded/counted above
        if self.synapse_decay is not None:
            a = self.synapse_decay
            tr = self.trace if self.trace is not None else torch.zeros_like(out[0])
            for t in range(out.shape[0]):
                tr = a * tr + (1.0 - a) * out[t]
                out[t] = tr
            self.trace = tr
        return out.reshape((-1,) + tuple(out.shape[2:]))

    def _finish_differentiable(self, spikes: Tensor) -> Tensor:
        """:meth:`_finish` for spikes that carry a graph: no in-place update, so autograd flows through the
        amplitude; what is recorded and counted is detached. No synaptic filter (none of its users has one)."""
        if self.synapse_decay is not None:
            raise NotImplementedError("the differentiable path has no synaptic filter")
        self._record(spikes)
        out = spikes * _channel_view(self.amplitude, spikes.ndim - 1).to(spikes.dtype)
        return out.reshape((-1,) + tuple(out.shape[2:]))

    def _record(self, spikes: Tensor) -> None:
        """Record and count binary spikes ``[T, B, ...]`` (detached; unsigned) where asked to."""
        binary = spikes.detach()
        if self.record:
            self.recorded.append(binary.clone())
        if self.count_spikes:
            per_step = binary.reshape(binary.shape[0], -1).sum(1)
            summed = binary.sum(0)
            self.spike_counts = per_step if self.spike_counts is None else torch.cat([self.spike_counts, per_step])
            self.rate_sum = summed if self.rate_sum is None else self.rate_sum + summed

    def _begin(self, x: Tensor) -> tuple[Tensor, bool, Tensor, Tensor, Tensor]:
        """Start a chunk: ``(xs, const, th, v, spikes)`` with the input as ``[T, B, ...]`` (``[B, ...]`` when
        constant), the threshold shaped to broadcast over one step, the membrane potential carried over from
        the previous chunk (or initial) and an empty ``[T, B, ...]`` buffer for the binary spikes."""
        xs, const = self._split_time(x)
        shape = xs.shape if const else xs.shape[1:]
        if "current" in self._buffers:  # broadcasts over [B, C, ...] and [T, B, C, ...] alike
            xs = xs + _channel_view(self.current, len(shape)).to(xs.dtype)
        th = _channel_view(self.threshold, len(shape)).to(xs.dtype)
        v = self.v if self.v is not None else self._initial_v(xs if const else xs[0], th)
        spikes = torch.empty((self.steps,) + tuple(shape), dtype=xs.dtype, device=xs.device)
        return xs, const, th, v, spikes

    def _initial_v(self, like: Tensor, th: Tensor) -> Tensor:
        v = torch.zeros_like(like)
        if self.v_init:
            v = v + self.v_init * th
        if "v_offset" in self._buffers:
            v = v + _channel_view(self.v_offset, like.ndim).to(like.dtype)
        return v

    def initial_v(self, like: Tensor) -> Tensor:
        """The membrane potential before the first step, for one step's input ``like`` ``[B, C, ...]``:
        ``v_init * θ`` plus the calibrated ``v_offset`` where the recipe fitted one."""
        return self._initial_v(like, _channel_view(self.threshold, like.ndim).to(like.dtype))

    def rate(self, x: Tensor) -> Tensor:
        """Rate-model (ANN) equivalent of this neuron for input current ``x``: ``clamp(x/θ, 0, 1) * amplitude``
        (used by the diagnostics, which compare SNN rates with it)."""
        th = _channel_view(self.threshold, x.ndim).to(x.dtype)
        amp = _channel_view(self.amplitude, x.ndim).to(x.dtype)
        return torch.clamp(x / th, 0.0, 1.0) * amp


class IFNode(BaseNode):
    """Integrate-and-fire neuron: ``v += I``; spike when ``v >= θ``; reset by subtraction or to zero.

    With reset by subtraction and a constant input ``I`` the rate converges to ``clamp(I/θ, 0, 1)``, so the
    output ``rate * amplitude`` approximates ``clamp(I, 0, θ)`` when ``amplitude = θ`` (Rueckauer 2017).

    ``signed=True`` (signed neuron with memory, Wang et al. 2022): a neuron whose membrane falls below 0 while it
    has a positive net spike count emits a negative spike (``-amplitude``) and its membrane gains θ back. Spikes
    sent too early, before a later negative input, are thus taken back, and the net count stays the rounded
    running sum of the input (with ``v_init = 0.5``), clipped to [0, steps].
    """

    def _signed_forward(self, xs: Tensor, const: bool, th: Tensor, v: Tensor, spikes: Tensor) -> Tensor:
        count = self.count if self.count is not None else torch.zeros_like(v)
        fire = th * (1.0 - TIE)
        for t in range(self.steps):  # in place, as forward: s = [v >= θ] - [v < 0 and count > 0]
            v.add_(xs if const else xs[t])
            s = spikes[t]
            torch.ge(v, fire, out=s)
            s.sub_(torch.logical_and(v < 0, count > 0).to(s.dtype))
            count.add_(s)
            v.addcmul_(s, th, value=-1.0)
        self.v, self.count = v, count
        return self._finish(spikes)

    def step(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One timestep with explicit state and no side effects, ``(I, v) -> (spikes * amplitude, v')``: what
        :meth:`forward` computes at each step of a chunk (it updates in place, for speed). Traceable, so
        exporters (:func:`zoo.interchange.onnx.export_snn_step`) build their graph from it."""
        if self.signed:
            raise NotImplementedError("signed neurons carry their spike count as a second state, which the "
                                      "one-step export does not have yet")
        if "current" in self._buffers:
            x = x + _channel_view(self.current, x.ndim).to(x.dtype)
        th = _channel_view(self.threshold, v.ndim).to(v.dtype)
        v = v + x
        s = (v >= th * (1.0 - TIE)).to(v.dtype)
        v = v - s * th if self.reset == "subtract" else v * (1.0 - s)
        return s * _channel_view(self.amplitude, v.ndim).to(v.dtype), v

    def forward(self, x: Tensor) -> Tensor:
        xs, const, th, v, spikes = self._begin(x)
        if self.signed:
            return self._signed_forward(xs, const, th, v, spikes)
        T = self.steps
        scalar = self.threshold.numel() == 1
        th_f = float(self.threshold.item()) if scalar else None
        fire_f = th_f * (1.0 - TIE) if scalar else None
        fire = th * (1.0 - TIE)
        subtract = self.reset == "subtract"
        for t in range(T):
            v.add_(xs if const else xs[t])
            s = spikes[t]
            torch.ge(v, fire_f if scalar else fire, out=s)  # binary spikes written in place
            if not subtract:
                v.addcmul_(v, s, value=-1.0)  # v * (1 - s): reset to zero
            elif scalar:
                v.sub_(s, alpha=th_f)
            else:
                v.addcmul_(s, th, value=-1.0)
        self.v = v
        return self._finish(spikes)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron with refractory period (Hunsberger & Eliasmith 2016).

    Per step of ``dt`` seconds: ``v = decay * v + gain * I`` with ``decay = exp(-dt / tau_rc)``; a spike when
    ``v >= θ``; after a spike the neuron is reset and ignores its input for ``tau_ref`` seconds (rounded to
    whole steps). ``gain = 1`` treats the input as charge per step (a converted ReLU network);
    ``gain = 1 - decay`` integrates the current exactly over the step (a soft-LIF trained network).
    """

    def __init__(
        self,
        threshold: Tensor | float = 1.0,
        *,
        tau_rc: float = 0.02,
        tau_ref: float = 0.0,
        dt: float = 0.001,
        gain: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(threshold, **kwargs)
        if self.signed:
            raise ValueError("signed neurons are IF neurons (IFNode); LIFNode has no negative spikes")
        if tau_rc <= 0 or dt <= 0 or tau_ref < 0:
            raise ValueError("LIFNode needs tau_rc > 0, dt > 0 and tau_ref >= 0")
        self.tau_rc, self.tau_ref, self.dt, self.gain = float(tau_rc), float(tau_ref), float(dt), float(gain)
        self.decay = math.exp(-dt / tau_rc)
        self.ref_steps = int(round(tau_ref / dt))

    def _state_init(self) -> None:
        super()._state_init()
        self.refractory: Tensor | None = None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau_rc={self.tau_rc}, tau_ref={self.tau_ref}, dt={self.dt}"

    def forward(self, x: Tensor) -> Tensor:
        xs, const, th, v, spikes = self._begin(x)
        ref = self.refractory if self.refractory is not None else torch.zeros_like(v)
        for t in range(self.steps):
            active = (ref <= 0).to(v.dtype)
            v = self.decay * v + active * self.gain * (xs if const else xs[t])
            s = (v >= th * (1.0 - TIE)).to(v.dtype)
            spikes[t] = s
            v = v - s * th if self.reset == "subtract" else v * (1.0 - s)
            if self.ref_steps:
                ref = torch.where(s > 0, torch.full_like(ref, self.ref_steps), ref - 1)
        self.v, self.refractory = v, ref
        return self._finish(spikes)


class PLIFNode(BaseNode):
    """Parametric leaky integrate-and-fire neuron with a learnable membrane time constant (Fang et al. 2021,
    "Incorporating Learnable Membrane Time Constants to Enhance Learning of Spiking Neural Networks").

    Per step, with ``1/τ = sigmoid(w)`` (so ``τ > 1``) and ``w`` an ``nn.Parameter`` initialised to
    ``-log(tau_init - 1)``::

        H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / τ      charge (V[-1] = V_reset)
        S[t] = Θ(H[t] - θ)                                   fire: exact step forward, surrogate backward
        V[t] = H[t] · (1 - S[t]) + V_reset · S[t]            hard reset

    ``v_reset=None`` gives a soft reset instead, ``H[t] = V[t-1] + (X[t] - V[t-1]) / τ`` and
    ``V[t] = H[t] - θ · S[t]`` (SpikingJelly's convention). ``surrogate`` defaults to
    :class:`zoo.spiking.surrogate.ATan` (α = 2, Fang et al.'s choice). ``detach_reset=True`` cuts the gradient
    path through the reset (``S`` is detached in the third line); Fang et al.'s reference code (``codes/models.py``)
    defaults to True, SpikingJelly's ``ParametricLIFNode`` to False, the default kept here. Spikes are binary
    (``amplitude = 1``) and a neuron fires at exactly ``H >= θ`` (no tie tolerance: no converted twin to agree
    with). Layout and carried state as the other neurons; the state keeps its graph across chunks until
    :meth:`reset_state` or :meth:`detach_state` (truncated back-propagation through time).
    """

    def __init__(self, tau_init: float = 2.0, *, threshold: Tensor | float = 1.0, v_reset: float | None = 0.0,
                 surrogate: Surrogate | None = None, detach_reset: bool = False) -> None:
        super().__init__(threshold, amplitude=1.0, reset="subtract" if v_reset is None else "zero")
        if not tau_init > 1.0:
            raise ValueError(f"PLIFNode needs tau_init > 1 (1/tau = sigmoid(w) < 1), got {tau_init}")
        self.w = nn.Parameter(torch.tensor(-math.log(tau_init - 1.0)))
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.detach_reset = bool(detach_reset)

    @property
    def tau(self) -> float:
        """The current membrane time constant ``1 / sigmoid(w)`` in steps."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", tau={self.tau:.4g}, v_reset={self.v_reset}"
                + (", detach_reset" if self.detach_reset else ""))

    def _initial_v(self, like: Tensor, th: Tensor) -> Tensor:
        return torch.full_like(like, self.v_reset or 0.0)

    def detach_state(self) -> None:
        """Keep the membrane potential but drop its graph: the next chunk back-propagates no further back."""
        if self.v is not None:
            self.v = self.v.detach()

    def forward(self, x: Tensor) -> Tensor:
        xs, const = self._split_time(x)
        one = xs if const else xs[0]
        th = _channel_view(self.threshold, one.ndim).to(xs.dtype)
        v = self.v if self.v is not None else self._initial_v(one, th)
        k = torch.sigmoid(self.w).to(xs.dtype)  # 1/τ
        v_reset = self.v_reset
        spikes = []
        for t in range(self.steps):
            x_t = xs if const else xs[t]
            h = v + k * (x_t - v) if v_reset is None else v + k * (x_t - (v - v_reset))
            s = self.surrogate(h - th)
            r = s.detach() if self.detach_reset else s
            v = h - r * th if v_reset is None else h * (1.0 - r) + v_reset * r
            spikes.append(s)
        self.v = v
        return self._finish_differentiable(torch.stack(spikes))


class TSSLNode(BaseNode):
    """LIF neuron with a first-order synaptic response, trained with TSSL-BP (Zhang & Li 2020, "Temporal Spike
    Sequence Learning via Backpropagation for Deep Spiking Neural Networks", NeurIPS).

    Per step, with ``k_m = 1 - 1/τ_m`` and ``k_s = 1 - 1/τ_s``::

        u[t]   = k_m · u[t-1] · (1 - s[t-1]) + I[t]     membrane, reset to zero after a spike
        s[t]   = Θ(u[t] - θ)                            binary spike (Θ(0) = 1)
        syn[t] = k_s · syn[t-1] + s[t],  a[t] = syn[t] / τ_s

    Its output to the next layer is the post-synaptic potential ``a[t]`` of its spike train, not the spikes;
    the binary spikes are what is recorded and counted. The backward pass is TSSL-BP's, not a surrogate: the
    error reaches the membrane through the timing of its spikes (:mod:`zoo.spiking.tssl`, whose
    :class:`~zoo.spiking.tssl.TSSLFunction` runs a chunk; ``warmup`` keeps the reference code's sigmoid
    gradient at quiet steps). Defaults are the paper's: ``τ_m = 5``, ``τ_s = 3``, ``θ = 1``. Layout and
    carried state (membrane and synaptic trace) as :class:`PLIFNode`; gradients cross chunk boundaries until
    :meth:`reset_state` or :meth:`detach_state`.
    """

    def __init__(self, tau_m: float = 5.0, tau_s: float = 3.0, *, threshold: Tensor | float = 1.0,
                 warmup: bool = True) -> None:
        super().__init__(threshold, amplitude=1.0, reset="zero")
        if not (tau_m > 1.0 and tau_s >= 1.0 and bool((self.threshold > 0).all())):
            raise ValueError(f"TSSLNode needs tau_m > 1, tau_s >= 1 and threshold > 0; got tau_m={tau_m}, "
                             f"tau_s={tau_s}, threshold={self.threshold.tolist()}")
        self.tau_m, self.tau_s, self.warmup = float(tau_m), float(tau_s), bool(warmup)

    def _state_init(self) -> None:
        super()._state_init()
        self.syn: Tensor | None = None  # synaptic trace (a = syn / tau_s)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau_m={self.tau_m:g}, tau_s={self.tau_s:g}" + (
            "" if self.warmup else ", warmup=False")

    def detach_state(self) -> None:
        """Keep the state but drop its graph: the next chunk back-propagates no further back."""
        self.v = None if self.v is None else self.v.detach()
        self.syn = None if self.syn is None else self.syn.detach()

    def forward(self, x: Tensor) -> Tensor:
        xs, const = self._split_time(x)
        if const:
            xs = xs.expand((self.steps,) + tuple(xs.shape))
        th = _channel_view(self.threshold, xs.ndim - 1).to(xs.dtype)
        u = self.v if self.v is not None else torch.zeros_like(xs[0])
        syn = self.syn if self.syn is not None else torch.zeros_like(xs[0])
        a, s, self.v, self.syn = tssl_chunk(xs, u, syn, th, self.tau_m, self.tau_s, self.warmup)
        self._record(s)
        return a.reshape((-1,) + tuple(a.shape[2:]))


__all__ = ["BaseNode", "IFNode", "LIFNode", "PLIFNode", "TSSLNode", "RESETS"]
