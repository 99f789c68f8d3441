"""Building blocks shared by the zoo's architectures: the soft-LIF and QCFS activations and the kwarg handling.

Every architecture in :mod:`zoo.models` is built from the same small set of modules so that the converter
(:mod:`zoo.conversion.graph`) can map it onto spiking neurons:

* activations: ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh(0, c)`` (``act="clip"``), :class:`SoftLIF` or
  :class:`QCFS`, one module instance per use, never in place; or, for a directly trained SNN, spiking neurons:
  :class:`zoo.spiking.PLIFNode` (``act="plif"``, Fang et al. 2021) or :class:`zoo.spiking.TSSLNode`
  (``act="tssl"``, Zhang & Li 2020) (the net is then a multi-step SNN body, see :func:`zoo.spiking.multi_step`);
* ``nn.Conv2d`` / ``nn.Linear`` (optionally followed by ``nn.BatchNorm2d`` / ``nn.BatchNorm1d``);
* ``nn.MaxPool2d`` / ``nn.AvgPool2d`` / ``nn.AdaptiveAvgPool2d``, ``nn.Flatten``, ``nn.Dropout``;
* residual adds written ``out = out + shortcut`` followed by an activation, concatenations ``torch.cat(.., 1)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("relu", "relu6", "clip", "softlif", "qcfs", "plif", "tssl")
POOLS = ("max", "avg")

# SoftLIF: below this smoothed current the rate is set to exactly 0 (see SoftLIF's docstring).
_SOFTLIF_P_MIN = 1e-10


class SoftLIF(nn.Module):
    """Soft leaky integrate-and-fire rate neuron (Hunsberger & Eliasmith 2015/2016, "Spiking deep networks with
    LIF neurons", arXiv:1510.08829 / 1611.05141).

    The steady-state firing rate of a LIF neuron driven by a constant input current ``j`` (threshold at
    ``j = 1``, membrane time constant ``tau_rc``, refractory period ``tau_ref``, in seconds) is
    ``r(j) = 1 / (tau_ref + tau_rc * log(1 + 1 / (j - 1)))`` for ``j > 1`` and 0 otherwise. Its derivative is
    unbounded at the threshold, so the soft-LIF replaces ``max(j - 1, 0)`` by a softplus with smoothing
    ``gamma``::

        p    = gamma * softplus((j - 1) / gamma)
        rate = 1 / (tau_ref + tau_rc * log(1 + 1 / p))        # Hz
        out  = amplitude * rate                               # + noise_std * N(0, 1) in training, then >= 0

    For ``gamma -> 0`` this is exactly the LIF rate curve, which is why the converter can swap a trained
    ``SoftLIF`` for LIF spiking neurons with the same ``tau_rc``/``tau_ref`` (and output scale ``amplitude``).
    ``amplitude`` (0.063 by default, Hunsberger's value) scales rates of tens of Hz to activations of order 1.

    The soft curve approaches 0 only logarithmically slowly as ``j`` decreases (about 2 Hz at ``j = 0.4``). To
    stay finite in forward and backward passes, ``p`` below ``1e-10`` (i.e. ``j < 1 - 19.5 * gamma``, about
    0.415 for the default ``gamma``) gives a rate of exactly 0 and zero gradient, which also matches the LIF
    neuron the layer is converted to. Computation runs in float32 even under autocast.

    Noise (``noise_std`` > 0) is Gaussian, added to the output in training mode only, as Hunsberger trains
    networks robust to the variability of spike trains; the result is clamped to be non-negative.
    """

    def __init__(self, tau_rc: float = 0.02, tau_ref: float = 0.002, gamma: float = 0.03,
                 amplitude: float = 0.063, noise_std: float = 0.0) -> None:
        super().__init__()
        if tau_rc <= 0 or tau_ref < 0 or gamma <= 0 or amplitude <= 0 or noise_std < 0:
            raise ValueError(f"SoftLIF needs tau_rc > 0, tau_ref >= 0, gamma > 0, amplitude > 0, noise_std >= 0; "
                             f"got tau_rc={tau_rc}, tau_ref={tau_ref}, gamma={gamma}, amplitude={amplitude}, "
                             f"noise_std={noise_std}")
        self.tau_rc: float = float(tau_rc)
        self.tau_ref: float = float(tau_ref)
        self.gamma: float = float(gamma)
        self.amplitude: float = float(amplitude)
        self.noise_std: float = float(noise_std)

    def rate(self, x: Tensor) -> Tensor:
        """Firing rate in Hz for input current ``x`` (no amplitude, no noise)."""
        return softlif_output(x, self.tau_rc, self.tau_ref, self.gamma, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        out = softlif_output(x, self.tau_rc, self.tau_ref, self.gamma, self.amplitude)
        if self.training and self.noise_std > 0:
            # torch.randn, not randn_like: a channels-last randn_like is 4x slower on a CPU
            noise = torch.randn(out.shape, dtype=out.dtype, device=out.device)
            out = (out + self.noise_std * noise).clamp(min=0.0)
        return out.to(x.dtype)

    def max_rate(self) -> float:
        """The rate's supremum, 1 / tau_ref (inf for tau_ref = 0)."""
        return math.inf if self.tau_ref == 0 else 1.0 / self.tau_ref

    def extra_repr(self) -> str:
        return (f"tau_rc={self.tau_rc}, tau_ref={self.tau_ref}, gamma={self.gamma}, amplitude={self.amplitude}, "
                f"noise_std={self.noise_std}")


def _softlif_rate(x: Tensor, tau_rc: float, tau_ref: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """The soft-LIF rate in Hz, in float32, with what its derivative needs: ``(z, p, rate)``, ``z = (j - 1) /
    gamma``, ``p`` the smoothed current (1 where it is below ``_SOFTLIF_P_MIN`` and the rate is exactly 0)."""
    # in place where possible: on a CPU, allocating each intermediate costs as much as computing it
    z = x.to(torch.float32, copy=True).sub_(1.0).div_(gamma)
    p = F.softplus(z).mul_(gamma)
    tiny = p < _SOFTLIF_P_MIN
    p.masked_fill_(tiny, 1.0)
    # log(1 + 1/p), not log1p(1/p): 2x faster on a CPU
    rate = p.reciprocal().add_(1.0).log_().mul_(tau_rc).add_(tau_ref).reciprocal_()
    return z, p, rate.masked_fill_(tiny, 0.0)


class _SoftLIFOutput(torch.autograd.Function):
    """``amplitude * SoftLIF.rate(j)`` with its derivative written out. Autograd of the composite keeps about ten
    intermediate tensors per layer and differentiates each op (softplus, log, reciprocal, masks); this keeps
    three and computes ``d out / d j = amplitude * tau_rc * rate^2 * sigmoid((j - 1) / gamma) / (p (p + 1))``
    in one pass, which makes a soft-LIF training step several times faster on a CPU."""

    @staticmethod
    def forward(ctx, j: Tensor, tau_rc: float, tau_ref: float, gamma: float, amplitude: float) -> Tensor:  # noqa: D102
        z, p, rate = _softlif_rate(j, tau_rc, tau_ref, gamma)
        ctx.save_for_backward(z, p, rate)
        ctx.scale, ctx.dtype = amplitude * tau_rc, j.dtype
        return rate * amplitude

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        z, p, rate = ctx.saved_tensors
        d = torch.sigmoid(z).mul_(rate).mul_(rate).div_(p.add(1.0).mul_(p)).mul_(ctx.scale)  # 0 where rate is 0
        return d.mul_(grad).to(ctx.dtype), None, None, None, None


def softlif_output(x: Tensor, tau_rc: float, tau_ref: float, gamma: float, amplitude: float) -> Tensor:
    """``amplitude * SoftLIF.rate(x)`` in float32 through :class:`_SoftLIFOutput` (a leaf for torch.fx)."""
    return _SoftLIFOutput.apply(x, tau_rc, tau_ref, gamma, amplitude)


torch.fx.wrap("softlif_output")


class _FloorSTE(torch.autograd.Function):
    """``floor`` in the forward pass, the identity in the backward pass (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


class QCFS(nn.Module):
    """Quantization clip-floor-shift activation (Bu et al. 2022, ICLR, "Optimal ANN-SNN conversion for
    high-accuracy and ultra-low-latency spiking neural networks")::

        y = lambda / L * clip(floor(x * L / lambda + 1/2), 0, L)

    ``L`` (``levels``) quantization steps and a learnable threshold ``lambda`` (one per layer, or one per
    channel with ``channels``). An IF neuron with threshold ``lambda``, reset by subtraction and its membrane
    starting at ``lambda / 2`` emits exactly ``clip(floor(x * L / lambda + 1/2), 0, L)`` spikes in ``L`` steps of
    a constant input ``x``, so its mean output is this activation: the converter maps a trained QCFS layer onto
    such neurons with the trained ``lambda`` as threshold (variant ``bu2022``).

    Training: the floor passes gradients straight through; ``lambda`` learns from the clipped and the
    quantized part, as in the reference implementation. Computation runs in float32 even under autocast.
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0, channels: int | None = None) -> None:
        super().__init__()
        if int(levels) != levels or levels < 1 or threshold <= 0 or (channels is not None and channels < 1):
            raise ValueError(f"QCFS needs an integer levels >= 1, threshold > 0 and channels >= 1 (or None); got "
                             f"levels={levels}, threshold={threshold}, channels={channels}")
        self.levels: int = int(levels)
        self.threshold = nn.Parameter(torch.full((channels or 1,), float(threshold)))

    def _th(self, ndim: int) -> Tensor:
        th = self.threshold.float()
        return th.reshape(()) if th.numel() == 1 else th.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x: Tensor) -> Tensor:
        th = self._th(x.ndim)
        y = torch.clamp(x.float() / th, 0.0, 1.0)
        y = _FloorSTE.apply(y * self.levels + 0.5) / self.levels
        return (y * th).to(x.dtype)

    def extra_repr(self) -> str:
        n = self.threshold.numel()
        return f"levels={self.levels}, " + (f"threshold={self.threshold.item():.4g}" if n == 1 else f"channels={n}")


PLIF_KWARGS = ("tau_init", "v_reset", "detach_reset", "surrogate", "alpha")


def make_plif(tau_init: float = 2.0, v_reset: float | None = 0.0, detach_reset: bool = True,
              surrogate: str = "atan", alpha: float = 2.0, **unknown: Any) -> nn.Module:
    """A :class:`zoo.spiking.PLIFNode` for ``act="plif"``; defaults are Fang et al.'s (2021): ``tau_init=2``,
    hard reset to 0, reset path detached, arctan surrogate with ``alpha=2``."""
    from zoo.spiking.neuron import PLIFNode
    from zoo.spiking.surrogate import SURROGATES

    if unknown:
        raise ValueError(f"act='plif' takes act_kwargs {list(PLIF_KWARGS)}; got {sorted(unknown)}")
    if surrogate not in SURROGATES:
        raise ValueError(f"act='plif': surrogate={surrogate!r} is not one of {sorted(SURROGATES)}")
    return PLIFNode(tau_init, v_reset=v_reset, detach_reset=detach_reset, surrogate=SURROGATES[surrogate](alpha))


TSSL_KWARGS = ("tau_m", "tau_s", "threshold", "warmup")


def make_tssl(tau_m: float = 5.0, tau_s: float = 3.0, threshold: float = 1.0, warmup: bool = True,
              **unknown: Any) -> nn.Module:
    """A :class:`zoo.spiking.TSSLNode` for ``act="tssl"``; defaults are Zhang & Li's (2020, the configs of their
    code): ``tau_m=5``, ``tau_s=3``, ``threshold=1``, and the warm-up gradient of quiet neurons of their
    ``functions/tsslbp.py`` (``warmup=False``: pure TSSL-BP)."""
    from zoo.spiking.neuron import TSSLNode

    if unknown:
        raise ValueError(f"act='tssl' takes act_kwargs {list(TSSL_KWARGS)}; got {sorted(unknown)}")
    if not isinstance(warmup, bool):
        raise ValueError(f"act='tssl': warmup must be true or false, got {warmup!r}")
    return TSSLNode(float(tau_m), float(tau_s), threshold=float(threshold), warmup=warmup)


# --------------------------------------------------------------------------------------------- options
# timm passes these to every entrypoint; they carry no meaning for our randomly initialised models.
_TIMM_FACTORY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
COMMON_KWARGS = ("num_classes", "in_chans", "act", "clip_value", "act_kwargs", "pool", "bias", "bn", "width",
                 "drop_rate", "img_size")


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"img_size must be an int or (H, W), got {v}")
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class ArchOptions:
    """The resolved common kwargs of a zoo architecture (see :func:`parse_options`)."""

    name: str
    num_classes: int = 10
    in_chans: int = 3
    act: str = "relu"
    clip_value: float | None = None
    act_kwargs: dict = field(default_factory=dict)
    pool: str | None = None  # None: the architecture's own choice
    bias: bool = True
    bn: bool = True
    width: float = 1.0
    drop_rate: float = 0.0
    img_size: tuple[int, int] = (32, 32)

    # ---- factories -------------------------------------------------------------------------------------
    def ch(self, c: int) -> int:
        """A channel count scaled by ``width`` (at least 1)."""
        return max(1, int(round(c * self.width)))

    def act_layer(self, channels: int | None = None) -> nn.Module:
        """A fresh activation module (never shared, never in place); ``channels`` sizes QCFS's per-channel
        thresholds (``act_kwargs: {channel_wise: true}``)."""
        if self.act == "relu":
            return nn.ReLU()
        if self.act == "relu6":
            return nn.ReLU6()
        if self.act == "clip":
            return nn.Hardtanh(0.0, float(self.clip_value))
        if self.act == "qcfs":
            kw = dict(self.act_kwargs)
            if kw.pop("channel_wise", False):
                if channels is None:
                    raise ValueError(f"{self.name}: QCFS with channel_wise=True at a layer of unknown width")
                kw["channels"] = channels
            return QCFS(**kw)
        if self.act == "plif":
            return make_plif(**self.act_kwargs)
        if self.act == "tssl":
            return make_tssl(**self.act_kwargs)
        return SoftLIF(**self.act_kwargs)

    def pool_layer(self, kind: str | None = None, kernel_size: int = 2, stride: int | None = None,
                   padding: int = 0) -> nn.Module:
        """``nn.MaxPool2d`` or ``nn.AvgPool2d``: ``self.pool`` if set, else ``kind`` (the architecture's default)."""
        kind = self.pool or kind or "max"
        if kind == "max":
            return nn.MaxPool2d(kernel_size, stride, padding)
        return nn.AvgPool2d(kernel_size, stride, padding)

    def conv(self, cin: int, cout: int, kernel_size: int | tuple[int, int] = 3, stride: int = 1,
             padding: int | tuple[int, int] | None = None, act: bool = True) -> nn.Sequential:
        """Conv2d [+ BatchNorm2d] [+ activation]. With BN the conv has no bias (BN's shift replaces it)."""
        if padding is None:
            ks = _pair(kernel_size)
            padding = (ks[0] // 2, ks[1] // 2)
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=self.bias and not self.bn)]
        if self.bn:
            layers.append(nn.BatchNorm2d(cout))
        if act:
            layers.append(self.act_layer(cout))
        return nn.Sequential(*layers)

    def linear(self, cin: int, cout: int, act: bool = True, norm: bool | None = None) -> nn.Sequential:
        """Linear [+ BatchNorm1d if ``norm`` (default: ``self.bn``)] [+ activation]."""
        norm = self.bn if norm is None else norm
        layers: list[nn.Module] = [nn.Linear(cin, cout, bias=self.bias and not norm)]
        if norm:
            layers.append(nn.BatchNorm1d(cout))
        if act:
            layers.append(self.act_layer(cout))
        return nn.Sequential(*layers)

    def classifier(self, cin: int) -> nn.Linear:
        return nn.Linear(cin, self.num_classes, bias=self.bias)


def parse_options(name: str, kwargs: dict[str, Any], *, pretrained: bool = False, defaults: dict | None = None,
                  extra: tuple[str, ...] = ()) -> tuple[ArchOptions, dict[str, Any]]:
    """Validate a zoo entrypoint's kwargs. Returns the common options and the architecture-specific ``extra``
    kwargs that were given.

    ``bias=False`` builds a zero-bias network (Cao et al. 2015, Diehl et al. 2015): no bias in any conv/linear
    layer and no BatchNorm (whose shift is a bias), so ``bn`` defaults to False then and ``bn=True`` is an error.
    """
    if pretrained:
        raise ValueError(f"{name}: pretrained weights are not available for the zoo's architectures "
                         "(pretrained=True is unsupported); train one with `zoo train` / zoo.training.train, "
                         "or load a trained one with zoo.training.load_trained")
    kwargs = {k: v for k, v in kwargs.items() if k not in _TIMM_FACTORY_KWARGS and v is not None}
    allowed = set(COMMON_KWARGS) | set(extra)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{name}: unexpected keyword argument(s) {unknown}; accepted: {sorted(allowed)}")
    merged = {**(defaults or {}), **kwargs}
    extra_given = {k: merged.pop(k) for k in list(merged) if k in extra}

    act = str(merged.get("act", "relu")).lower()
    if act not in ACTIVATIONS:
        raise ValueError(f"{name}: act={act!r} is not one of {ACTIVATIONS}")
    clip_value = merged.get("clip_value")
    if act == "clip":
        if clip_value is None or float(clip_value) <= 0:
            raise ValueError(f"{name}: act='clip' needs clip_value > 0 (the activation is Hardtanh(0, clip_value))")
        clip_value = float(clip_value)
    act_kwargs = dict(merged.get("act_kwargs") or {})
    if act_kwargs and act not in ("softlif", "qcfs", "plif", "tssl"):
        raise ValueError(f"{name}: act_kwargs are only used with act='softlif' or 'qcfs', or with the spiking "
                         f"act='plif' or 'tssl' (got act={act!r})")
    if act == "plif":
        make_plif(**act_kwargs)  # validates names and values early
    if act == "tssl":
        make_tssl(**act_kwargs)  # validates names and values early
    if act == "softlif":
        SoftLIF(**act_kwargs)  # validates names and values early
    if act == "qcfs":
        unknown_kw = sorted(set(act_kwargs) - {"levels", "threshold", "channel_wise"})
        if unknown_kw:
            raise ValueError(f"{name}: act='qcfs' takes act_kwargs levels, threshold and channel_wise; got {unknown_kw}")
        QCFS(**{k: v for k, v in act_kwargs.items() if k != "channel_wise"})
    pool = merged.get("pool")
    if pool is not None:
        pool = str(pool).lower()
        if pool not in POOLS:
            raise ValueError(f"{name}: pool={pool!r} is not one of {POOLS}")
    bias = bool(merged.get("bias", True))
    bn = merged.get("bn")
    if bn is None:
        bn = bias
    bn = bool(bn)
    if bn and not bias:
        raise ValueError(f"{name}: bias=False (a zero-bias network) excludes BatchNorm, whose shift is a bias; "
                         "leave bn unset or pass bn=False")
    width = float(merged.get("width", 1.0))
    if width <= 0:
        raise ValueError(f"{name}: width must be > 0, got {width}")
    drop_rate = float(merged.get("drop_rate", 0.0))
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"{name}: drop_rate must be in [0, 1), got {drop_rate}")
    num_classes = int(merged.get("num_classes", 10))
    in_chans = int(merged.get("in_chans", 3))
    if num_classes < 1 or in_chans < 1:
        raise ValueError(f"{name}: num_classes and in_chans must be >= 1")
    opts = ArchOptions(name=name, num_classes=num_classes, in_chans=in_chans, act=act, clip_value=clip_value,
                       act_kwargs=act_kwargs, pool=pool, bias=bias, bn=bn, width=width, drop_rate=drop_rate,
                       img_size=_pair(merged.get("img_size", 32)))
    return opts, extra_given


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out), default linears, BatchNorm scale 1 / shift 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


__all__ = ["SoftLIF", "QCFS", "ArchOptions", "parse_options", "init_weights", "ACTIVATIONS", "POOLS", "COMMON_KWARGS"]
