"""Activation statistics from calibration data, in one streaming pass with constant memory.

For every :class:`~zoo.conversion.graph.ActPoint` an :class:`ActivationObserver` keeps the exact maximum and a
fixed-size histogram of the positive activations, per layer and per channel. The histogram range grows by
powers of two when a larger value arrives (old bins merge exactly), so memory is ``O(channels * bins)``
whatever the number of images, and any percentile can be read off afterwards with a resolution of at least
``max / bins``. Statistics save to and load from a safetensors file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.conversion.graph import ActPoint, act_points
from zoo.inputs import InputError, check_images

DEFAULT_BINS = 1024


def _pow2_ceil(x: Tensor) -> Tensor:
    """Smallest power of two >= x (elementwise, x > 0)."""
    return torch.exp2(torch.ceil(torch.log2(x)))


def _regrid(hist: Tensor, old_range: Tensor, new_range: Tensor) -> Tensor:
    """Merge bins of ``hist`` [..., bins] from ranges old -> new (new/old a power of two, per row)."""
    bins = hist.shape[-1]
    factor = torch.where(old_range > 0, new_range / old_range.clamp(min=1e-30), torch.ones_like(new_range))
    out = torch.zeros_like(hist)
    idx = torch.arange(bins, device=hist.device).expand_as(hist)
    new_idx = torch.div(idx, factor.unsqueeze(-1).round().long().clamp(min=1), rounding_mode="floor")
    out.scatter_add_(-1, new_idx, hist)
    return out


class ActivationObserver:
    """Streaming per-layer and per-channel statistics of one activation tensor (channel dim 1)."""

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        self.bins = bins
        self.count = 0  # number of activation values seen (all, including zeros)
        self.max: Tensor | None = None  # [C]
        self.range: Tensor | None = None  # [C] histogram range per channel, a power of two
        self.hist: Tensor | None = None  # [C, bins]

    @torch.no_grad()
    def update(self, y: Tensor) -> None:
        y = y.detach().float()
        C = y.shape[1] if y.ndim > 1 else 1
        vals = y.transpose(0, 1).reshape(C, -1) if y.ndim > 1 else y.reshape(1, -1)
        self.count += vals.numel()
        bmax = vals.max(dim=1).values.clamp(min=0)
        if self.max is None:
            self.max = bmax.clone()
            self.range = torch.zeros(C, device=y.device)  # the state lives where the activations are
            self.hist = torch.zeros(C, self.bins, dtype=torch.float64, device=y.device)
        else:
            self.max = torch.maximum(self.max, bmax)
        need = self.max > self.range
        if need.any():
            new_range = torch.where(need, _pow2_ceil(self.max.clamp(min=1e-30)), self.range)
            grow = need & (self.range > 0)
            if grow.any():
                self.hist[grow] = _regrid(self.hist[grow], self.range[grow], new_range[grow])
            self.range = new_range
        pos = vals > 0
        rng = self.range.clamp(min=1e-30).unsqueeze(1)
        idx = (vals / rng * self.bins).long().clamp(0, self.bins - 1)
        idx = idx + torch.arange(C, device=y.device).unsqueeze(1) * self.bins
        self.hist.view(-1).index_add_(0, idx[pos], torch.ones(int(pos.sum()), dtype=torch.float64, device=y.device))

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.max, self.range, self.hist) if t is not None)


class LayerStats:
    """Statistics of one activation layer: exact max and histograms, per layer and per channel."""

    def __init__(self, max: Tensor, range: Tensor, hist: Tensor, count: int) -> None:
        self.channel_max, self.range, self.hist, self.count = max, range, hist, count

    @property
    def max(self) -> float:
        return float(self.channel_max.max())

    def percentile(self, p: float, channel_wise: bool = False) -> Tensor:
        """The p-th percentile of the positive activations (per layer: scalar tensor; per channel: [C]).

        Channels without any positive activation fall back to the layer value. ``p = 100`` is the exact max.
        """
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {p}")
        if p == 100:
            return self.channel_max.clone() if channel_wise else torch.tensor(self.max)
        if channel_wise:
            vals = torch.stack([self._from_hist(self.hist[c], float(self.range[c]), p) for c in range(len(self.range))])
            layer = self.percentile(p, False)
            return torch.where(vals > 0, vals, layer)
        # per layer: merge channel histograms on the largest range
        R = float(self.range.max())
        if R <= 0:
            return torch.tensor(0.0)
        merged = _regrid(self.hist, self.range.clamp(min=1e-30), torch.full_like(self.range, R)).sum(0)
        return self._from_hist(merged, R, p)

    def _from_hist(self, hist: Tensor, R: float, p: float) -> Tensor:
        total = float(hist.sum())
        if total <= 0 or R <= 0:
            return torch.tensor(0.0)
        cum = hist.cumsum(0)
        target = p / 100.0 * total
        i = int(torch.searchsorted(cum, float(target)).clamp(max=len(hist) - 1))
        prev = float(cum[i - 1]) if i > 0 else 0.0
        frac = (target - prev) / max(float(hist[i]), 1e-12)
        width = R / len(hist)
        return torch.tensor(min((i + min(max(frac, 0.0), 1.0)) * width, float(self.channel_max.max())))


STATS_FORMAT = "snn-zoo-activation-stats/2"
_STATS_FORMATS = ("snn-zoo-activation-stats/1", STATS_FORMAT)  # /1 kept the counts in the metadata


class ActivationStats(dict):
    """``{act_point_path: LayerStats}`` with save/load to safetensors.

    The file holds ``<path>/max``, ``<path>/range``, ``<path>/hist`` and ``<path>/count`` (an int64 scalar) per
    ActPoint and one metadata key, ``format``: safetensors writes several metadata keys in hash order, so the
    same statistics would give other bytes (and DVC would rerun every convert stage) on each run."""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tensors = {}
        for name, s in self.items():
            tensors[f"{name}/max"] = s.channel_max.contiguous()
            tensors[f"{name}/range"] = s.range.contiguous()
            tensors[f"{name}/hist"] = s.hist.contiguous()
            tensors[f"{name}/count"] = torch.tensor(int(s.count), dtype=torch.int64)
        from zoo.utils import atomic_path

        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": STATS_FORMAT})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ActivationStats":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") not in _STATS_FORMATS:
            raise ValueError(f"{path} is not an snn-zoo activation statistics file")
        t = load_file(str(path))
        names = sorted({k.rsplit("/", 1)[0] for k in t})

        def count(n: str) -> int:
            return int(t[f"{n}/count"]) if f"{n}/count" in t else int(meta[f"{n}/count"])

        return cls({n: LayerStats(t[f"{n}/max"], t[f"{n}/range"], t[f"{n}/hist"], count(n)) for n in names})

    def state_bytes(self) -> int:
        return sum(s.channel_max.nbytes + s.range.nbytes + s.hist.nbytes for s in self.values())


def iterate_inputs(data, max_batches: int | None = None) -> Iterable[Tensor]:
    """Inputs from a DataLoader/iterable of ``(x, y)`` or ``x``, a tensor, or a Dataset."""
    if isinstance(data, Tensor):
        yield check_images(data, "calibration data")
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = torch.utils.data.DataLoader(data, batch_size=256)
    for i, batch in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        yield check_images(batch[0] if isinstance(batch, (tuple, list)) else batch, "calibration data")


@torch.no_grad()
def calibrate(canonical: nn.Module, data, *, bins: int = DEFAULT_BINS, max_batches: int | None = None,
              device: str | torch.device = "cpu", progress: bool = True) -> ActivationStats:
    """Run ``canonical`` (from :func:`~zoo.conversion.graph.canonicalize`) over ``data`` and return the
    statistics of every ActPoint. Memory does not depend on how much data is passed."""
    points = act_points(canonical)
    observers = {n: ActivationObserver(bins) for n in points}
    for n, p in points.items():
        p.observer = observers[n]
    canonical.eval().to(device)
    try:
        total = None
        try:
            total = len(data) if max_batches is None else min(len(data), max_batches)
        except TypeError:
            pass
        for x in tqdm(iterate_inputs(data, max_batches), total=total, desc="calibrate", disable=not progress,
                      leave=False):
            canonical(x.to(device))
    finally:
        for p in points.values():
            p.observer = None
    if all(o.max is None for o in observers.values()):
        raise InputError("calibration data is empty: pass a DataLoader, Dataset or tensor with images")
    # statistics are returned on the CPU, whatever device ran the model
    return ActivationStats({n: LayerStats(o.max.cpu(), o.range.cpu(), o.hist.cpu(), o.count) if o.max is not None
                            else LayerStats(o.max, o.range, o.hist, o.count) for n, o in observers.items()})


__all__ = ["ActivationObserver", "LayerStats", "ActivationStats", "calibrate", "iterate_inputs"]
