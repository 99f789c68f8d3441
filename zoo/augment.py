"""Batch augmentation on the accelerator: random crop after zero padding, horizontal flip, random shift.

:class:`zoo.training.ClassifierModule` applies it to whole batches after they reach the device
(``on_after_batch_transfer``), in normalized space, so padding is the mean colour.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTS = ("auto", "none", "crop_flip", "shift")


def random_crop(x: Tensor, pad: int) -> Tensor:
    """Per-sample random crop of a batch [B, C, H, W] after zero padding by ``pad`` (one gather, any device)."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: Tensor) -> Tensor:
    """Flip each image of a batch horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def resolve_augment(augment: str, input_shape: tuple[int, ...] | list[int]) -> tuple[str, int]:
    """(mode, pad) for ``augment`` in AUGMENTS and the data's [C, H, W]."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r} is not one of {AUGMENTS}")
    c, h = int(input_shape[0]), int(input_shape[-1])
    if augment == "auto":
        augment = "crop_flip" if c == 3 and h >= 32 else "shift"
    if augment == "none":
        return "none", 0
    return augment, (4 if augment == "crop_flip" else max(1, h // 14))


__all__ = ["AUGMENTS", "random_crop", "random_hflip", "resolve_augment"]
