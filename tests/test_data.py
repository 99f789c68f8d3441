"""Datasets, the prepare step and PreparedData; real MNIST/CIFAR-10 checks under $ZOO_DATA_DIR."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo.data
import zoo.datasets
from zoo.data import DataNotFoundError, PreparedData, data_root, load_dataset, prepare
from zoo.utils import sha256_file

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _no_temp_files(d: Path) -> None:
    leftovers = [p.name for p in d.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    prepare("digits", out, calib_size=300, progress=False)
    return out


@pytest.fixture
def real_root() -> Path:
    """The real data root ($ZOO_DATA_DIR). Skips when it is not there, except under CI=true where it fails."""
    env = os.environ.get("ZOO_DATA_DIR")
    root = Path(env) if env else None
    ok = root is not None and (root / "MNIST" / "raw").is_dir() and (root / "cifar10-jpeg").is_dir()
    if not ok:
        reason = (f"real datasets not found: ZOO_DATA_DIR={env!r} must hold MNIST/raw and cifar10-jpeg "
                  "(e.g. ZOO_DATA_DIR=../shared/data)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " — required when CI=true")
        pytest.skip(reason)
    return root


# ---------------------------------------------------------------------------------------------- basics
def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    assert data_root() == Path("data") / "raw"
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(str(tmp_path)) == tmp_path


def test_digits_splits():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) == 1437 and len(test) == 360
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(int(y), int)
    xs = train.tensors[0]
    assert xs.min() >= 0 and xs.max() <= 1 and xs.max() == 1
    # stratified: every class in both splits in proportion
    ctr = torch.bincount(train.tensors[1], minlength=10)
    cte = torch.bincount(test.tensors[1], minlength=10)
    assert (ctr >= 139).all() and (cte >= 35).all()
    # deterministic
    again = load_dataset("digits", "train")
    assert torch.equal(again.tensors[0], xs) and torch.equal(again.tensors[1], train.tensors[1])
    assert train.classes == [str(i) for i in range(10)]
    with pytest.raises(ValueError):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="unknown dataset source"):
        load_dataset("svhn", "train")


# --------------------------------------------------------------------------------------------- prepare
def test_prepare_digits_files(digits_dir):
    names = sorted(p.name for p in digits_dir.iterdir())
    assert names == ["calibration.safetensors", "fingerprint.json", "test.safetensors", "train.safetensors"]
    _no_temp_files(digits_dir)
    fp = json.loads((digits_dir / "fingerprint.json").read_text())
    assert fp["source"] == "digits" and fp["num_classes"] == 10 and fp["input_shape"] == [1, 8, 8]
    assert fp["classes"] == [str(i) for i in range(10)]
    assert fp["splits"]["train"]["count"] == 1437 and fp["splits"]["test"]["count"] == 360
    assert fp["splits"]["calibration"]["count"] == 300
    assert fp["splits"]["train"]["shape"] == [1437, 1, 8, 8]
    for split, info in fp["splits"].items():
        assert sha256_file(digits_dir / info["file"]) == info["sha256"], split
    assert len(fp["source_listing"]["sha256"]) == 64 and len(fp["sha256"]) == 64
    assert fp["normalization"]["mean"][0] == pytest.approx(0.305, abs=0.01)
    assert fp["normalization"]["std"][0] == pytest.approx(0.376, abs=0.01)


def test_prepare_is_deterministic(digits_dir, tmp_path):
    fp = prepare("digits", tmp_path, calib_size=300, progress=False)
    old = json.loads((digits_dir / "fingerprint.json").read_text())
    assert fp == old
    for name in ("train.safetensors", "test.safetensors", "calibration.safetensors", "fingerprint.json"):
        assert (tmp_path / name).read_bytes() == (digits_dir / name).read_bytes(), name
    other = prepare("digits", tmp_path / "seed1", calib_size=300, seed=1, progress=False)
    assert other["splits"]["calibration"]["sha256"] != old["splits"]["calibration"]["sha256"]
    assert other["splits"]["train"]["sha256"] == old["splits"]["train"]["sha256"]


def test_prepare_is_atomic(digits_dir, tmp_path, monkeypatch):
    prepare("digits", tmp_path, calib_size=50, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_save = zoo.data.save_file

    def failing_save(tensors, path, metadata=None):
        real_save(tensors, path, metadata=metadata)  # the temp file is complete ...
        if "test" in json.loads(metadata["zoo"])["split"]:
            raise OSError("disk full")  # ... but the write of the second split fails

    monkeypatch.setattr(zoo.data, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare("digits", tmp_path, calib_size=100, progress=False)
    _no_temp_files(tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after["test.safetensors"] == before["test.safetensors"]  # never half-written
    assert "fingerprint.json" not in after  # an incomplete set is not described as complete
    with pytest.raises(DataNotFoundError, match="prepare"):
        PreparedData(tmp_path)
    monkeypatch.setattr(zoo.data, "save_file", real_save)
    prepare("digits", tmp_path, calib_size=50, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_prepared_data_roundtrip(digits_dir):
    pd = PreparedData(digits_dir, verify=True)
    assert pd.num_classes == 10 and pd.input_shape == (1, 8, 8) and pd.classes == [str(i) for i in range(10)]
    assert len(pd.train) == 1437 and len(pd.test) == 360 and len(pd.calibration) == 300
    x, y = pd.train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and y.dtype == torch.int64
    xs = pd.train.tensors[0]
    assert float(xs.mean()) == pytest.approx(0.0, abs=1e-3) and float(xs.std()) == pytest.approx(1.0, abs=1e-2)
    raw = load_dataset("digits", "train")
    assert torch.allclose(pd.normalize(raw.tensors[0]), xs)
    assert torch.equal(pd.train.tensors[1], raw.tensors[1])
    # calibration rows are train rows
    cal = pd.raw("calibration")
    assert torch.equal(cal["images"], raw.tensors[0][cal["indices"]])
    assert torch.equal(pd.calibration.tensors[1], raw.tensors[1][cal["indices"]])
    assert len(set(cal["indices"].tolist())) == 300
    assert pd.sha256 == pd.fingerprint["sha256"]


def test_prepared_data_verify_detects_changes(digits_dir, tmp_path):
    for p in digits_dir.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    data = bytearray((tmp_path / "test.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "test.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        PreparedData(tmp_path, verify=True)


def test_prepared_data_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="fingerprint.json"):
        PreparedData(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ missing data
def test_missing_mnist_names_path(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", "train", root=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "'mnist'" in msg and "ZOO_DATA_DIR" in msg and "datasets.mnist.root" in msg and "download" in msg


def test_missing_mnist_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "empty")):
        prepare("mnist", tmp_path / "out", progress=False)


def test_missing_cifar_and_imagenet(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(tmp_path / "cifar10-jpeg" / "test") in str(err.value)
    assert "cifar-10-batches-bin" in str(err.value) and "download" in str(err.value)
    with pytest.raises(DataNotFoundError, match="imagenet"):
        load_dataset("imagenet", "val", root=tmp_path)


# ------------------------------------------------------------------------------- CIFAR-10 binary version
def _fake_cifar_binary(root: Path, per_file: int = 3) -> dict[str, np.ndarray]:
    """CIFAR-10 binary batches: per record a label byte, then the R, G and B planes (1024 bytes each)."""
    rng = np.random.default_rng(1)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    records = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (per_file, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, per_file)
        rec.tofile(d / name)
        records[name] = rec
    return records


def test_cifar10_binary_reader(tmp_path):
    records = _fake_cifar_binary(tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path)
    train = load_dataset("cifar10", "train", root=tmp_path)
    assert len(test) == 3 and len(train) == 15 and test.classes == CIFAR_CLASSES
    x, y = test[1]
    rec = records["test_batch.bin"][1]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and int(y) == rec[0]
    assert torch.equal(x[0], torch.from_numpy(rec[1:1025].reshape(32, 32)))        # red plane first
    assert torch.equal(x[2, 31], torch.from_numpy(rec[-32:]))                        # blue, last row
    x_last, y_last = train[14]                                                       # data_batch_5, record 3
    assert int(y_last) == records["data_batch_5.bin"][2, 0]
    # a transform gets a PIL image, as with torchvision's datasets
    seen = []
    tr = load_dataset("cifar10", "test", root=tmp_path, transform=lambda im: seen.append(im.size) or 7)
    assert tr[0][0] == 7 and seen == [(32, 32)]
    out = tmp_path / "prepared"
    prepare("cifar10", out, root=tmp_path, calib_size=5, progress=False)
    pd = PreparedData(out)
    assert torch.equal(pd.raw("test")["images"], torch.stack([test[i][0] for i in range(3)]))
    assert pd.raw("train")["labels"].tolist() == [int(train[i][1]) for i in range(15)]


def test_cifar10_pickles_are_not_read(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", "test", root=tmp_path)
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "not read" in msg and "cifar-10-binary.tar.gz" in msg


def test_cifar10_binary_truncated(tmp_path):
    _fake_cifar_binary(tmp_path)
    f = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match="test_batch.bin.*truncated"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_cifar10_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo.datasets, "CIFAR10_BINARY_URL", "http://127.0.0.1:9/cifar-10-binary.tar.gz")
    with pytest.raises(DataNotFoundError, match="downloading http://127.0.0.1:9/cifar-10-binary.tar.gz failed"):
        load_dataset("cifar10", "test", root=tmp_path, download=True)
    assert not (tmp_path / "cifar-10-batches-bin").exists()


# ---------------------------------------------------------------------------------- image-folder reader
def _fake_image_folder(root: Path, splits=("train", "test"), classes=("cat", "dog"), n=6, size=32) -> None:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            d = root / "cifar10-jpeg" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")


def test_prepare_image_folder(tmp_path):
    _fake_image_folder(tmp_path / "root")
    fp = prepare("cifar10", tmp_path / "out", root=tmp_path / "root", calib_size=5, progress=True)
    assert fp["classes"] == ["cat", "dog"] and fp["input_shape"] == [3, 32, 32] and fp["dtype"] == "uint8"
    assert fp["splits"]["train"]["count"] == 12 and fp["splits"]["calibration"]["count"] == 5
    assert fp["source_listing"]["entries"] == 24
    _no_temp_files(tmp_path / "out")
    pd = PreparedData(tmp_path / "out", verify=True)
    raw = pd.raw("train")
    assert raw["images"].dtype == torch.uint8 and raw["labels"].tolist() == [0] * 6 + [1] * 6
    ds = load_dataset("cifar10", "train", root=tmp_path / "root")
    assert torch.equal(ds[7][0], raw["images"][7])
    assert pd.train.tensors[0].shape == (12, 3, 32, 32)
    assert float(pd.train.tensors[0].mean()) == pytest.approx(0.0, abs=1e-3)
    # the listing hash follows the files
    (tmp_path / "root" / "cifar10-jpeg" / "test" / "dog" / "0000.jpg").unlink()
    fp2 = prepare("cifar10", tmp_path / "out2", root=tmp_path / "root", calib_size=5, progress=False)
    assert fp2["source_listing"]["sha256"] != fp["source_listing"]["sha256"]


def test_image_size_only_for_image_folders(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        prepare("digits", tmp_path, image_size=16, progress=False)


# ------------------------------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_mnist(real_root, tmp_path):
    train = load_dataset("mnist", "train")  # root from $ZOO_DATA_DIR
    assert len(train) == 60000
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.uint8 and int(y) == 5
    fp = prepare("mnist", tmp_path, root=real_root, calib_size=512, progress=False)
    assert fp["splits"]["train"]["count"] == 60000 and fp["splits"]["test"]["count"] == 10000
    assert fp["input_shape"] == [1, 28, 28] and fp["num_classes"] == 10
    assert fp["normalization"]["mean"][0] == pytest.approx(0.1307, abs=1e-3)
    assert fp["normalization"]["std"][0] == pytest.approx(0.3081, abs=1e-3)
    assert fp["source_listing"]["entries"] == 4
    pd = PreparedData(tmp_path)
    assert len(pd.test) == 10000 and pd.calibration.tensors[0].shape == (512, 1, 28, 28)


@pytest.mark.data
def test_real_cifar10_image_folder(real_root):
    test = load_dataset("cifar10", "test")
    assert len(test) == 10000
    assert test.classes == CIFAR_CLASSES
    for i in (0, 4321, 9999):
        x, y = test[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and 0 <= y < 10
    images, labels = zoo.data._decode(torch.utils.data.Subset(test, range(0, 10000, 500)), "cifar", 0, False)
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == [i // 2 for i in range(20)]
