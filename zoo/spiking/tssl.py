"""TSSL-BP (Zhang & Li 2020, "Temporal Spike Sequence Learning via Backpropagation for Deep Spiking Neural
Networks", NeurIPS): the simulation of a chunk of ``T`` steps and its backward pass, as a
``torch.autograd.Function``. The neuron module around it is :class:`zoo.spiking.neuron.TSSLNode`.

Forward (exact), per step, with ``k_m = 1 - 1/τ_m`` and ``k_s = 1 - 1/τ_s``::

    u[t]   = k_m · u_r[t-1] + I[t]          membrane (u_r: after the reset; u_r[-1] = carried state, 0 at rest)
    s[t]   = Θ(u[t] - θ)                    spike (Θ(0) = 1)
    u_r[t] = u[t] · (1 - s[t])              reset to zero
    syn[t] = k_s · syn[t-1] + s[t]          first-order synaptic response
    a[t]   = syn[t] / τ_s                   post-synaptic potential (PSP): the neuron's output

Backward (TSSL-BP, as the authors' ``functions/tsslbp.py`` computes it). With ``g[t] = ∂L/∂a[t]`` and
``K[k] = k_s^k / τ_s`` (the PSP of one spike, ``k`` steps after it), ``Σ[t] = Σ_{t'>=t} K[t'-t] g[t']`` is the
error a spike at ``t`` would receive through its PSP (``Σ[t] = g[t]/τ_s + k_s Σ[t+1]``, the gradient w.r.t.
``syn[t]``). ``Δu[t] = u[t] - u_r[t-1]`` is the membrane's change in the step, ``> 0`` at every spike.

* No spike at ``t``: the error reaches ``u[t]`` only through the leak towards the next step,
  ``δ[t] = k_m · δ[t+1]`` (plain back-propagation through the membrane; nothing through ``s[t]``).
* Spike at ``t_m``: ``δ[t_m] = c · (Σ[t_m] + (u[t_m] / τ_m) · δ[t_m+1])`` with ``c = min(1/Δu[t_m], 8)``.
  The first term is the inter-neuron dependency ``Σ_t g[t] · ∂a[t]/∂t_m · ∂t_m/∂u[t_m]``: the spike time
  moves with the membrane as ``∂t_m/∂u = -1/Δu`` (clamped to [-8, 0] as in the reference code), and the code
  takes ``∂a[t]/∂t_m = -K[t - t_m] / τ_s`` and multiplies the product by ``τ_s``, so that a spike moved
  earlier passes ``K[t - t_m] · c`` of its later PSP's error back. (The derivative of the decaying kernel
  alone has the other sign; the code's sign is that of the net effect of an earlier spike, which adds its PSP
  to the steps before ``t_m`` as well.) The second term is the intra-neuron dependency: the reset at ``t_m``
  removes ``u[t_m]`` from the membrane, whose leak ``u[t_m] / τ_m`` then shifts the neuron's next spike.
* Warm-up (the reference code's, on by default, ``warmup=False`` leaves pure TSSL-BP): at steps where the
  neuron has been quiet, ``a[t] < 1/(4 τ_s)``, the gradient w.r.t. the input is replaced by
  ``Σ[t] · σ'(z) / 0.2`` with ``z = clamp((u[t] - θ) / 0.2, -8, 8)`` (a sigmoid surrogate of the spike), so that
  neurons that never fire can learn to; the value carried back through time is the TSSL one.

The gradient w.r.t. the input current is ``δ[t]`` (``∂u[t]/∂I[t] = 1``), w.r.t. the carried membrane
``k_m δ[0]`` and w.r.t. the carried synaptic trace ``k_s Σ[0]``; the state a chunk hands on receives its
gradient from the next chunk, so a run split into chunks back-propagates as one chunk would.

Where this differs from the reference code: a neuron fires at ``u >= θ`` (the code: ``u > θ``; only exact ties
differ); the state can be carried from chunk to chunk (the code always starts from rest); and the loss is
the caller's (the zoo trains with cross-entropy on the mean output current, the code with its spike-count or
kernel losses).
"""
from __future__ import annotations

import torch
from torch import Tensor

#: ∂t_m/∂u = -1/Δu is clamped at this magnitude (the reference code's ``torch.clamp(-1 / delta_u, -8, 0)``)
MAX_TIMING_GAIN = 8.0
#: warm-up surrogate: width of the sigmoid, clamp of its argument, and the PSP below which a neuron is quiet
WARMUP_WIDTH, WARMUP_CLAMP, WARMUP_PSP = 0.2, 8.0, 0.25


def simulate(x: Tensor, u: Tensor, syn: Tensor, th: Tensor, tau_m: float,
             tau_s: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Run the neuron over the chunk ``x`` ``[T, B, ...]`` from the carried state ``u`` (membrane after the
    reset) and ``syn`` (synaptic trace), both ``[B, ...]``. Returns ``(a, s, u_pre, du, u_end, syn_end)``:
    PSPs, binary spikes, the membranes before the reset and their changes ``Δu`` per step (``[T, B, ...]``
    each), and the state after the chunk."""
    k_m, k_s = 1.0 - 1.0 / tau_m, 1.0 - 1.0 / tau_s
    a, s, u_pre, du = [], [], [], []
    for t in range(x.shape[0]):
        v = k_m * u + x[t]
        spike = (v >= th).to(x.dtype)
        du.append(v - u)
        u_pre.append(v)
        u = v * (1.0 - spike)
        syn = k_s * syn + spike
        s.append(spike)
        a.append(syn / tau_s)
    return torch.stack(a), torch.stack(s), torch.stack(u_pre), torch.stack(du), u, syn


def _warmup_gain(u_pre: Tensor, th: Tensor) -> Tensor:
    """σ'(z) / width at z = clamp((u - θ) / width): the warm-up surrogate's slope (in place on one buffer)."""
    sig = torch.sub(u_pre, th).div_(WARMUP_WIDTH).clamp_(-WARMUP_CLAMP, WARMUP_CLAMP).sigmoid_()
    return torch.addcmul(sig, sig, sig, value=-1.0).div_(WARMUP_WIDTH)  # σ - σ² = σ(1 - σ)


class TSSLFunction(torch.autograd.Function):
    """``(I [T, B, ...], u0, syn0, θ, τ_m, τ_s, warmup) -> (a, s, u_end, syn_end)``: the exact forward of
    :func:`simulate`, TSSL-BP's backward (module docstring). ``s`` (binary spikes) is not differentiable."""

    @staticmethod
    def forward(ctx, x: Tensor, u0: Tensor, syn0: Tensor, th: Tensor, tau_m: float, tau_s: float,
                warmup: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a, s, u_pre, du, u_end, syn_end = simulate(x, u0, syn0, th, tau_m, tau_s)
        gain = s / du.clamp(min=1.0 / MAX_TIMING_GAIN)  # c = min(1/Δu, 8) at spikes (Δu > 0 there), else 0
        ctx.save_for_backward(a, s, u_pre, gain, th)
        ctx.taus, ctx.warmup = (float(tau_m), float(tau_s)), bool(warmup)
        ctx.mark_non_differentiable(s)
        return a, s, u_end, syn_end

    @staticmethod
    def backward(ctx, g_a: Tensor, g_s: Tensor | None, g_u_end: Tensor | None, g_syn_end: Tensor | None):
        a, s, u_pre, gain, th = ctx.saved_tensors
        tau_m, tau_s = ctx.taus
        k_m, k_s = 1.0 - 1.0 / tau_m, 1.0 - 1.0 / tau_s
        T = a.shape[0]
        g_a = torch.zeros_like(a) if g_a is None else g_a
        # Σ[t]: the PSP error of a spike at t (the gradient w.r.t. syn[t]), the next chunk's included
        big_sigma = torch.empty_like(a)
        acc = g_syn_end if g_syn_end is not None else torch.zeros_like(a[0])
        for t in range(T - 1, -1, -1):
            acc = g_a[t] / tau_s + (acc if t == T - 1 else k_s * acc)
            big_sigma[t] = acc
        # δ[t] = ∂L/∂u[t] (before the reset), from the last step back. At a spike (gain > 0)
        # δ[t] = gain · (Σ[t] + u[t]/τ_m · δ[t+1]); elsewhere gain = 0 and δ[t] = k_m · δ[t+1]: one expression,
        # three passes over the step's tensors (this loop is most of TSSL-BP's cost)
        quiet_m = 1.0 - s  # 1 where no spike (exact in any float dtype; k_m multiplies at full precision)
        delta = torch.empty_like(a)
        after = g_u_end / k_m if g_u_end is not None else torch.zeros_like(a[0])  # δ[T], from the next chunk
        for t in range(T - 1, -1, -1):
            fired = torch.addcmul(big_sigma[t], u_pre[t], after, value=1.0 / tau_m).mul_(gain[t])
            after = torch.addcmul(fired, quiet_m[t], after, value=k_m)
            delta[t] = after
        grad_x = delta
        if ctx.warmup:
            quiet = a < WARMUP_PSP / tau_s
            grad_x = torch.where(quiet, _warmup_gain(u_pre, th).mul_(big_sigma), delta)
        return grad_x, k_m * delta[0], k_s * big_sigma[0], None, None, None, None


def tssl_chunk(x: Tensor, u0: Tensor, syn0: Tensor, th: Tensor, tau_m: float, tau_s: float,
               warmup: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(a, s, u_end, syn_end)`` for the chunk ``x`` ``[T, B, ...]``: through :class:`TSSLFunction` when a
    gradient is wanted, else :func:`simulate` alone (the same computation, nothing saved)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, u0, syn0)):
        return TSSLFunction.apply(x, u0, syn0, th, tau_m, tau_s, warmup)
    a, s, _, _, u_end, syn_end = simulate(x, u0, syn0, th, tau_m, tau_s)
    return a, s, u_end, syn_end


__all__ = ["simulate", "TSSLFunction", "tssl_chunk", "MAX_TIMING_GAIN"]
