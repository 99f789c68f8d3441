"""Surrogate spike functions for training spiking neurons with gradients (Neftci et al. 2019).

A spike is the Heaviside step of ``x = v - θ``: ``Θ(x) = 1`` when ``x >= 0``, else 0. Its derivative is zero
almost everywhere, so a surrogate keeps the exact step in the forward pass and back-propagates the derivative
``g'(x)`` of a smooth stand-in ``g`` instead (SpikingJelly's ``surrogate`` module, whose defaults these
follow):

* :class:`ATan` — ``g(x) = arctan(π/2 · α · x) / π + 1/2``, ``g'(x) = (α/2) / (1 + (π/2 · α · x)²)``;
  ``α = 2`` is Fang et al.'s (2021) choice for PLIF.
* :class:`Sigmoid` — ``g(x) = sigmoid(α · x)``, ``g'(x) = α · sigmoid(α · x) · (1 - sigmoid(α · x))``;
  ``α = 4`` by default.

Each is a module ``spike = ATan()(v - θ)``; :meth:`Surrogate.primitive` is ``g`` and
:meth:`Surrogate.derivative` is ``g'``. The step itself is :func:`heaviside`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def heaviside(x: Tensor) -> Tensor:
    """``Θ(x)``: 1 where ``x >= 0``, else 0, in ``x``'s dtype."""
    return (x >= 0).to(x.dtype)


class SpikeFunction(torch.autograd.Function):
    """Forward: :func:`heaviside`. Backward: the incoming gradient times ``surrogate.derivative(x)``."""

    @staticmethod
    def forward(ctx, x: Tensor, surrogate: "Surrogate") -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None]:
        (x,) = ctx.saved_tensors
        return (grad * ctx.surrogate.derivative(x) if ctx.needs_input_grad[0] else None), None


class Surrogate(nn.Module):
    """A spike function ``x -> Θ(x)`` whose gradient is ``derivative(x)`` (the derivative of ``primitive``)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def primitive(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def derivative(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return SpikeFunction.apply(x, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class ATan(Surrogate):
    """``g(x) = arctan(π/2 · α · x) / π + 1/2``; ``g'(x) = (α/2) / (1 + (π/2 · α · x)²)``."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


class Sigmoid(Surrogate):
    """``g(x) = sigmoid(α · x)``; ``g'(x) = α · sigmoid(α · x) · (1 - sigmoid(α · x))``."""

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)


SURROGATES = {"atan": ATan, "sigmoid": Sigmoid}

__all__ = ["heaviside", "SpikeFunction", "Surrogate", "ATan", "Sigmoid", "SURROGATES"]
