"""Raw datasets: the sources the pipeline prepares, read with the real loaders (torchvision, ImageFolder).

Sources (``SOURCES``):

* ``digits``: scikit-learn's 8x8 digits (ships with scikit-learn, no files, works offline). Deterministic
  stratified 80/20 train/test split (seed 0): 1437 / 360 images, float32 in [0, 1] (pixel / 16), [1, 8, 8].
* ``mnist``: torchvision's MNIST, raw IDX files under ``<root>/MNIST/raw``.
* ``cifar10``: an image folder ``<root>/cifar10-jpeg/<split>/<class>/*.jpg`` if present, else the binary
  version of CIFAR-10 (``<root>/cifar-10-batches-bin/*.bin``, downloadable with torchvision's md5-checked
  ``download_and_extract_archive``). The binary version is raw bytes (label byte + 3072 pixel bytes per
  record), read with numpy: the pickled "python version" that ``torchvision.datasets.CIFAR10`` unpickles is
  refused, because a downloaded pickle can run code.
* ``imagenet``: an image folder ``<root>/imagenet/<split>/<class>/*`` (splits usually ``train``/``val``).

The data root is :func:`data_root`: an explicit argument, else ``$ZOO_DATA_DIR``, else ``./data/raw``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

SOURCES = ("digits", "mnist", "cifar10", "imagenet")
DEFAULT_ROOT = Path("data") / "raw"
DIGITS_SEED = 0


class DataNotFoundError(FileNotFoundError):
    """A dataset is not where the data root says. The message names the path, the source and the fixes."""

    def __init__(self, source: str, path: str | Path, detail: str = "", fix: str | None = None) -> None:
        self.source, self.path = source, str(path)
        if fix is None:
            fix = (f"set ZOO_DATA_DIR to the data root that holds it (e.g. ZOO_DATA_DIR=../shared/data), or "
                   f"`datasets.{source}.root` in params.yaml, or pass download=True (`datasets.{source}.download: "
                   f"true`) on a machine that is online")
        msg = f"dataset {source!r} not found at {self.path}{': ' + detail if detail else ''}. Fix: {fix}."
        super().__init__(msg)


def data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$ZOO_DATA_DIR``, else ``./data/raw``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("ZOO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return DEFAULT_ROOT


def _check_source(source: str) -> str:
    source = source.lower()
    if source not in SOURCES:
        raise ValueError(f"unknown dataset source {source!r}; known: {SOURCES}")
    return source


# ------------------------------------------------------------------------------------------ raw datasets
class DigitsDataset(TensorDataset):
    """scikit-learn digits as tensors: images float32 [N, 1, 8, 8] in [0, 1], labels int64."""

    classes = [str(i) for i in range(10)]


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=0.2, stratify=d.target,
                                           random_state=DIGITS_SEED)
    idx = np.sort(idx_train if split == "train" else idx_test)
    return (d.images[idx] / 16.0).astype(np.float32), d.target[idx].astype(np.int64), d.images


CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_BINARY_DIR = "cifar-10-batches-bin"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_CIFAR10_RECORD = 1 + 3 * 32 * 32


class TensorImages(TensorDataset):
    """Decoded images (uint8 [N, C, H, W]) and int64 labels with the dataset's ``classes`` and the ``files``
    they were read from. ``transform``, if given, receives each image as a PIL image (as torchvision's
    datasets do) and returns the tensor."""

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str],
                 transform: Callable | None = None, files: Sequence[Path] = ()) -> None:
        super().__init__(images, labels)
        self.classes, self.transform, self.files = list(classes), transform, [Path(f) for f in files]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = super().__getitem__(i)
        if self.transform is not None:
            from torchvision.transforms.functional import to_pil_image

            x = self.transform(to_pil_image(x))
        return x, y


def _cifar10_binary(root: Path, split: str, download: bool, transform: Callable | None,
                    folder: Path) -> TensorImages:
    """CIFAR-10's binary version: per record one label byte and 3072 pixel bytes (1024 R, G, B planes)."""
    binary = root / CIFAR10_BINARY_DIR
    files = [binary / f for f in _CIFAR10_FILES[split]]
    if download and not all(f.is_file() for f in files):
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR10_BINARY_URL, str(root), md5=CIFAR10_BINARY_MD5)
        except (RuntimeError, OSError) as err:  # urllib's URLError is an OSError
            raise DataNotFoundError("cifar10", binary, f"downloading {CIFAR10_BINARY_URL} failed ({err})") from err
    missing = [f for f in files if not f.is_file()]
    if missing:
        pickles = root / "cifar-10-batches-py"
        detail = (f"neither the image folder {folder}/<class>/*.jpg nor the binary version {binary}/"
                  f"{missing[0].name} exists")
        if pickles.is_dir():
            detail += (f"; {pickles} (the pickled python version) is not read, because unpickling a downloaded "
                       "file can run code: get cifar-10-binary.tar.gz instead")
        raise DataNotFoundError("cifar10", binary, detail)
    chunks = []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % _CIFAR10_RECORD:
            raise ValueError(f"{f}: {raw.size} bytes is not a whole number of {_CIFAR10_RECORD}-byte CIFAR-10 "
                             "records (truncated?); delete it and download cifar-10-binary.tar.gz again")
        chunks.append(raw.reshape(-1, _CIFAR10_RECORD))
    records = np.concatenate(chunks)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    if int(labels.max()) >= len(CIFAR10_CLASSES):
        raise ValueError(f"{binary}: label {int(labels.max())} out of range 0-9; these are not CIFAR-10 "
                         "binary batches (CIFAR-100's binary files have two label bytes)")
    images = torch.from_numpy(np.ascontiguousarray(records[:, 1:])).view(-1, 3, 32, 32)
    return TensorImages(images, labels, CIFAR10_CLASSES, transform, files)


def _default_transform(transform: Callable | None) -> Callable:
    if transform is not None:
        return transform
    from torchvision.transforms import PILToTensor

    return PILToTensor()


def _image_folder(source: str, path: Path, transform: Callable | None) -> Dataset:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=_default_transform(transform))
    except FileNotFoundError as err:  # no class folders / no images
        raise DataNotFoundError(source, path, f"no images in the class folders ({err})") from err


def load_dataset(source: str, split: str, root: str | Path | None = None, download: bool = False, *,
                 transform: Callable | None = None) -> Dataset:
    """One split of a source as a map-style dataset of ``(image, label)`` pairs.

    Images are tensors [C, H, W]: uint8 for mnist/cifar10/imagenet (``transform`` replaces the default
    ``PILToTensor`` for those), float32 in [0, 1] for digits. ``dataset.classes`` lists the class names.
    Missing data raises :class:`DataNotFoundError`.
    """
    source = _check_source(source)
    if source == "digits":
        if split not in ("train", "test"):
            raise ValueError(f"digits has splits 'train' and 'test', not {split!r}")
        x, y, _ = _digits_split(split)
        return DigitsDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))
    root = data_root(root)
    if source == "mnist":
        if split not in ("train", "test"):
            raise ValueError(f"mnist has splits 'train' and 'test', not {split!r}")
        from torchvision.datasets import MNIST

        raw = root / "MNIST" / "raw"
        needed = raw / ("train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte")
        if not download and not needed.exists():
            raise DataNotFoundError("mnist", raw, "expected torchvision's raw IDX files (train-images-idx3-ubyte, "
                                                  "t10k-images-idx3-ubyte, ...) under <root>/MNIST/raw")
        try:
            return MNIST(str(root), train=split == "train", download=download,
                         transform=_default_transform(transform))
        except (RuntimeError, OSError) as err:
            raise DataNotFoundError("mnist", raw, str(err)) from err
    if source == "cifar10":
        if split not in ("train", "test"):
            raise ValueError(f"cifar10 has splits 'train' and 'test', not {split!r}")
        folder = root / "cifar10-jpeg" / split
        if folder.is_dir():
            return _image_folder("cifar10", folder, transform)
        return _cifar10_binary(root, split, download, transform, folder)
    # imagenet
    folder = root / "imagenet" / split
    if not folder.is_dir():
        raise DataNotFoundError("imagenet", folder, "expected an image folder <root>/imagenet/<split>/<class>/* "
                                                    "(ImageNet cannot be downloaded automatically)")
    return _image_folder("imagenet", folder, transform)


__all__ = ["SOURCES", "DataNotFoundError", "data_root", "load_dataset", "DigitsDataset", "TensorImages"]
