"""Datasets and the "prepare" step.

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

:func:`prepare` materializes a source once, as safetensors files a training run loads in a fraction of a
second (no pickle)::

    <out_dir>/train.safetensors        images [N, C, H, W] uint8 (float32 in [0, 1] for digits), labels int64
    <out_dir>/test.safetensors         same
    <out_dir>/calibration.safetensors  images, labels and ``indices`` (int64, rows of train.safetensors): a
                                       fixed-seed random subset of the *train* split, in random order, for
                                       activation statistics during conversion. It is a copy, not removed
                                       from the train split (calibration needs data the ANN was fitted on,
                                       never test data).
    <out_dir>/fingerprint.json         counts, shapes, classes, normalization mean/std (per channel, of train
                                       images scaled to [0, 1]), sha256 of every written file and of the
                                       source listing, and ``sha256``: one hash for the whole prepared set.

Every file is written to a temporary name in ``out_dir`` and renamed into place; fingerprint.json is removed
first and written last, so a directory with a fingerprint is complete (and one without is not). :class:`PreparedData` loads it back with normalized tensors.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from zoo.utils import atomic_path, sha256_file, write_json

SOURCES = ("digits", "mnist", "cifar10", "imagenet")
SPLITS = ("train", "test", "calibration")
DEFAULT_ROOT = Path("data") / "raw"
FORMAT_VERSION = 1
DIGITS_SEED = 0
FILES = {split: f"{split}.safetensors" for split in SPLITS}
FINGERPRINT = "fingerprint.json"


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


# ----------------------------------------------------------------------------------------------- prepare
def _resize_transform(image_size: int | None) -> Callable | None:
    if image_size is None:
        return None
    from torchvision import transforms as T

    return T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.PILToTensor()])


def _decode(ds: Dataset, desc: str, num_workers: int | None, progress: bool) -> tuple[Tensor, Tensor]:
    """All images and labels of a dataset of (uint8 tensor, label), with a progress bar."""
    from tqdm.auto import tqdm

    n = len(ds)  # type: ignore[arg-type]
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if n > 5000 else 0
    loader = DataLoader(ds, batch_size=256, shuffle=False, num_workers=num_workers)
    images, labels = [], []
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x, y in loader:
            images.append(x)
            labels.append(torch.as_tensor(y, dtype=torch.int64))
            bar.update(len(y))
    return torch.cat(images).contiguous(), torch.cat(labels)


def _to_tensors(source: str, ds: Dataset, desc: str, num_workers: int | None,
                progress: bool) -> tuple[Tensor, Tensor]:
    if isinstance(ds, TensorDataset) and getattr(ds, "transform", None) is None:
        return ds.tensors[0].contiguous(), ds.tensors[1].to(torch.int64)
    data = getattr(ds, "data", None)
    targets = getattr(ds, "targets", None)
    if source == "mnist" and isinstance(data, Tensor):  # decoded IDX already in memory
        return data.unsqueeze(1).contiguous(), torch.as_tensor(targets, dtype=torch.int64)
    return _decode(ds, desc, num_workers, progress)


def _listing_sha(source: str, datasets: Sequence[Dataset]) -> tuple[str, int]:
    """sha256 of the source listing: (relative path, size) of every image of an image folder, (name, size,
    content sha256) of the few files of file-based sources, the array bytes for digits."""
    h = hashlib.sha256()
    count = 0
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        h.update(np.ascontiguousarray(d.images).tobytes())
        h.update(np.ascontiguousarray(d.target).astype(np.int64).tobytes())
        return h.hexdigest(), 1
    for ds in datasets:
        samples = getattr(ds, "samples", None)
        if samples is not None:  # ImageFolder
            base = Path(ds.root)  # type: ignore[attr-defined]
            for path, label in samples:
                p = Path(path)
                h.update(f"{p.relative_to(base.parent).as_posix()}\t{p.stat().st_size}\t{label}\n".encode())
                count += 1
        elif getattr(ds, "files", None):  # TensorImages read from files (CIFAR-10 binary batches)
            for p in ds.files:  # type: ignore[attr-defined]
                h.update(f"{p.name}\t{p.stat().st_size}\t{sha256_file(p)}\n".encode())
                count += 1
        else:
            folder = Path(ds.raw_folder)  # type: ignore[attr-defined]  # torchvision's MNIST
            for p in sorted(folder.iterdir()):
                if p.is_file() and not p.name.endswith(".gz") and not p.name.endswith(".tar.gz"):
                    h.update(f"{p.name}\t{p.stat().st_size}\t{sha256_file(p)}\n".encode())
                    count += 1
            break  # one folder holds both splits
    return h.hexdigest(), count


def _channel_stats(images: Tensor, scale: float, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``images / scale`` (float64 accumulation, bounded memory)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    n = 0
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].to(torch.float64) / scale
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
        n += x.numel() // c
    mean = s / n
    std = (s2 / n - mean * mean).clamp(min=0).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _save_split(path: Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> str:
    # safetensors writes a multi-key metadata map in hash order (different bytes run to run): keep one key
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"zoo": json.dumps(meta, sort_keys=True)})
    return sha256_file(path)


def prepare(source: str, out_dir: str | Path, root: str | Path | None = None, download: bool = False,
            calib_size: int = 1000, *, seed: int = 0, image_size: int | None = None,
            num_workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Materialize ``source`` into ``out_dir`` (layout in the module docstring) and return the fingerprint.

    ``calib_size`` images (at most the train count) are drawn from the train split with ``seed``.
    ``image_size`` resizes (shorter side) and center-crops image-folder sources; ImageNet needs it (default 64).
    """
    source = _check_source(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the fingerprint marks a complete set: drop the old one first, so a failed run leaves no stale marker
    (out_dir / FINGERPRINT).unlink(missing_ok=True)
    if source == "imagenet" and image_size is None:
        image_size = 64
    if image_size is not None and source in ("digits", "mnist"):
        raise ValueError(f"image_size applies to image-folder sources (cifar10-jpeg, imagenet), not {source!r}")
    transform = _resize_transform(image_size)
    splits = ("train", "val") if source == "imagenet" and (data_root(root) / "imagenet" / "val").is_dir() \
        else ("train", "test")
    ds_train = load_dataset(source, "train", root, download, transform=transform)
    ds_test = load_dataset(source, splits[1], root, download, transform=transform)
    classes = [str(c) for c in getattr(ds_train, "classes", [])]
    listing_sha, listing_count = _listing_sha(source, [ds_train, ds_test])

    x_train, y_train = _to_tensors(source, ds_train, f"{source} train", num_workers, progress)
    x_test, y_test = _to_tensors(source, ds_test, f"{source} {splits[1]}", num_workers, progress)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{source}: train images {tuple(x_train.shape[1:])} and test images "
                         f"{tuple(x_test.shape[1:])} differ in shape")
    if not classes:
        classes = [str(i) for i in range(int(max(y_train.max(), y_test.max())) + 1)]
    scale = 1.0 if x_train.dtype.is_floating_point else 255.0

    n_cal = max(0, min(int(calib_size), len(x_train)))
    g = torch.Generator().manual_seed(int(seed))
    cal_idx = torch.randperm(len(x_train), generator=g)[:n_cal]

    meta = {"source": source, "format_version": str(FORMAT_VERSION)}
    splits_info: dict[str, Any] = {}
    for split, tensors in (("train", {"images": x_train, "labels": y_train}),
                           ("test", {"images": x_test, "labels": y_test}),
                           ("calibration", {"images": x_train[cal_idx], "labels": y_train[cal_idx],
                                            "indices": cal_idx.to(torch.int64)})):
        sha = _save_split(out_dir / FILES[split], tensors, dict(meta, split=split))
        labels = tensors["labels"]
        splits_info[split] = dict(file=FILES[split], sha256=sha, count=int(len(labels)),
                                  shape=list(tensors["images"].shape),
                                  class_counts=torch.bincount(labels, minlength=len(classes)).tolist())
    splits_info["test"]["origin_split"] = splits[1]
    splits_info["calibration"].update(origin_split="train", seed=int(seed), indices_key="indices")
    mean, std = _channel_stats(x_train, scale)
    fp: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "classes": classes,
        "num_classes": len(classes),
        "input_shape": list(x_train.shape[1:]),
        "dtype": str(x_train.dtype).replace("torch.", ""),
        "scale": scale,
        "image_size": image_size,
        "normalization": {"mean": mean, "std": std},
        "splits": splits_info,
        "source_listing": {"sha256": listing_sha, "entries": listing_count},
    }
    fp["sha256"] = hashlib.sha256(json.dumps(
        {"source_listing": listing_sha, "files": {k: v["sha256"] for k, v in splits_info.items()},
         "normalization": fp["normalization"], "classes": classes}, sort_keys=True).encode()).hexdigest()
    write_json(out_dir / FINGERPRINT, fp)
    return fp


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> Tensor:
    """``(images / scale - mean) / std`` per channel, as float32 on the images' device: one image [C, H, W]
    or a batch [N, C, H, W]. The one normalization of the prepared data and of the hub's test sets."""
    x = images.to(torch.float32)
    if scale != 1.0:
        x = x / scale
    shape = (1, -1, 1, 1) if x.ndim == 4 else (-1, 1, 1)
    return (x - torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)) \
        / torch.tensor(std, dtype=torch.float32, device=x.device).view(shape)


class NormalizedDataset(Dataset):
    """A map-style dataset: the ``(image, label)`` pairs of ``base`` with images as float32
    ``(x / scale - mean) / std`` per channel. A module-level class, so DDP spawn can pickle it."""

    def __init__(self, base, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> None:
        self.base, self.mean, self.std, self.scale = base, list(mean), list(std), float(scale)
        self.classes = getattr(base, "classes", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return normalize(torch.as_tensor(x), self.mean, self.std, self.scale), int(y)


# ------------------------------------------------------------------------------------------ loading back
class PreparedData:
    """A prepared data directory (see :func:`prepare`).

    ``train``, ``test`` and ``calibration`` are TensorDatasets of ``(normalized float32 image, int64 label)``:
    ``(x / scale - mean) / std`` per channel, mean/std from the fingerprint. Each split is read on first use.
    ``raw(split)`` gives the stored (unnormalized) tensors and ``normalize`` applies the normalization to a
    batch (e.g. on an accelerator).
    """

    def __init__(self, out_dir: str | Path, verify: bool = False) -> None:
        self.path = Path(out_dir)
        fp_path = self.path / FINGERPRINT
        if not fp_path.is_file():
            raise DataNotFoundError("prepared", fp_path, "no fingerprint.json",
                                    fix="run the prepare step (zoo.data.prepare / `dvc repro`) for this directory")
        self.fingerprint: dict[str, Any] = json.loads(fp_path.read_text())
        if verify:
            for split, info in self.fingerprint["splits"].items():
                got = sha256_file(self.path / info["file"])
                if got != info["sha256"]:
                    raise ValueError(f"{self.path / info['file']}: sha256 {got} does not match fingerprint "
                                     f"{info['sha256']}; prepare the data again")

    # ---- metadata --------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.fingerprint["source"]

    @property
    def classes(self) -> list[str]:
        return list(self.fingerprint["classes"])

    @property
    def num_classes(self) -> int:
        return int(self.fingerprint["num_classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.fingerprint["input_shape"])

    @property
    def mean(self) -> list[float]:
        return list(self.fingerprint["normalization"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.fingerprint["normalization"]["std"])

    @property
    def sha256(self) -> str:
        return self.fingerprint["sha256"]

    # ---- tensors ---------------------------------------------------------------------------------------
    def raw(self, split: str) -> dict[str, Tensor]:
        """The stored tensors of a split: ``images`` (uint8 or float32), ``labels`` (and ``indices``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; prepared splits: {SPLITS}")
        path = self.path / self.fingerprint["splits"][split]["file"]
        if not path.is_file():
            raise DataNotFoundError(self.source, path, "prepared file missing",
                                    fix="run the prepare step (zoo.data.prepare / `dvc repro`) again")
        return load_file(str(path))

    def normalize(self, images: Tensor) -> Tensor:
        """``(images / scale - mean) / std`` per channel, as float32 on the images' device."""
        return normalize(images, self.mean, self.std, float(self.fingerprint.get("scale", 1.0)))

    def split(self, name: str) -> TensorDataset:
        t = self.raw(name)
        return TensorDataset(self.normalize(t["images"]), t["labels"].to(torch.int64))

    @cached_property
    def train(self) -> TensorDataset:
        return self.split("train")

    @cached_property
    def test(self) -> TensorDataset:
        return self.split("test")

    @cached_property
    def calibration(self) -> TensorDataset:
        return self.split("calibration")

    def __repr__(self) -> str:
        counts = {k: v["count"] for k, v in self.fingerprint["splits"].items()}
        return f"PreparedData({str(self.path)!r}, source={self.source!r}, input_shape={self.input_shape}, {counts})"


__all__ = ["SOURCES", "DataNotFoundError", "data_root", "load_dataset", "prepare", "PreparedData",
           "DigitsDataset", "TensorImages", "normalize"]
