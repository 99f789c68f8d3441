"""The "prepare" step: a source (:mod:`zoo.datasets`) materialized as safetensors files, and loading them back.

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

from zoo.datasets import SOURCES, DataNotFoundError, _check_source, data_root, load_dataset  # noqa: F401
from zoo.utils import atomic_path, sha256_file, write_json

SPLITS = ("train", "test", "calibration")
FORMAT_VERSION = 1
FILES = {split: f"{split}.safetensors" for split in SPLITS}
FINGERPRINT = "fingerprint.json"


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


__all__ = ["SOURCES", "DataNotFoundError", "data_root", "load_dataset", "prepare", "PreparedData", "normalize"]
