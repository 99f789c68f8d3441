"""Checks on the images given to calibration, conversion and simulation.

Bad input stops the work before anything is computed, written or logged, with an error that says what was
wrong and how to fix it: a NaN or infinite pixel (which would otherwise flow through the network and be
counted as a wrong answer), an image shape the model was not built for, or no images at all.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class InputError(ValueError):
    """Images that a model cannot be calibrated, converted or measured on."""


def check_images(x: Tensor, where: str, input_shape: Sequence[int] | None = None) -> Tensor:
    """Return ``x`` (a batch ``[B, *input_shape]``) if it holds finite images of the expected shape, else raise
    :class:`InputError`. ``where`` names the data in the message (e.g. ``"test data"``)."""
    if not isinstance(x, Tensor):
        raise InputError(f"{where}: expected a batch of images as a torch.Tensor, got {type(x).__name__}; "
                         "pass a DataLoader/Dataset of (image, label) tensors or a tuple (images, labels)")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"{where}: images of shape {list(x.shape[1:])}, but the model takes "
                         f"{list(input_shape)} (channels, height, width); pass images of the dataset it was "
                         "trained on, transformed as in training (zoo.test_data(name) for a published model)")
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            images = bad.flatten(1).any(1) if x.ndim > 1 else bad
            first = int(images.nonzero()[0, 0])
            raise InputError(f"{where}: {int(bad.sum())} NaN or infinite values in {int(images.sum())} of the "
                             f"{len(x)} images of a batch (the first: image {first} of the batch); remove those "
                             "images or repair them (e.g. torch.nan_to_num) before passing the data")
    return x


def check_not_empty(data, where: str) -> None:
    """Raise :class:`InputError` if ``data`` (anything with a length) holds no images."""
    try:
        n = len(data)
    except TypeError:  # an iterable without a length: checked once it has been read
        return
    if n == 0:
        raise InputError(f"{where} is empty: pass a DataLoader, Dataset or tensors holding at least one image "
                         "(in the pipeline: check that pipeline/prepare.py wrote the dataset's test split)")


__all__ = ["InputError", "check_images", "check_not_empty"]
