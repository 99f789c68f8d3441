"""SNN checkpoints (zoo.serialization): save_snn/load_snn round trips in float32 and float16, file
permissions, unreadable files, and thresholds that overflow float16 (refused, or stored with dtype_fallback)."""
from __future__ import annotations

import os
import stat

import pytest
import timm
import torch

import zoo
import zoo.models  # noqa: F401  (registers resnet20_cifar &c. with timm)

from conftest import bn_from_data


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = bn_from_data(timm.create_model("resnet18", num_classes=10), torch.rand(8, 3, 32, 32))
    x = torch.rand(8, 3, 32, 32)
    snn = zoo.convert(model, x, "hu2018", channel_wise=True, progress=False,
                      config={"arch": "resnet18", "arch_kwargs": {"num_classes": 10}})
    from zoo.serialization import CheckpointError, load_snn, save_snn

    path = save_snn(snn, tmp_path / "r18.safetensors")
    again = load_snn(path)
    assert torch.equal(snn.run(x[:2], 16), again.run(x[:2], 16))
    half = load_snn(save_snn(snn, tmp_path / "r18h.safetensors", dtype=torch.float16))
    assert (tmp_path / "r18h.safetensors").stat().st_size < 0.6 * path.stat().st_size
    assert half.config["recipe"]["name"] == "hu2018"
    # float16 on disk, float32 in memory: every tensor is the float32 one rounded to float16
    full, halved = snn.state_dict(), half.state_dict()
    assert full.keys() == halved.keys()
    for k, t in full.items():
        want = t.half().float() if t.is_floating_point() else t
        assert halved[k].dtype == t.dtype and torch.equal(halved[k], want), k
    # which perturbs the class scores by a few percent (0.10 of 2.45 measured) and keeps the predictions
    a, b = snn.run(x, 16), half.run(x, 16)
    assert torch.equal(a.argmax(1), b.argmax(1)) and (a - b).abs().max() <= 0.1 * a.abs().max()
    # safetensors' save_file recreates its file as 0600; a checkpoint gets the usual permissions (umask)
    umask = os.umask(0o027)
    try:
        shared = save_snn(snn, tmp_path / "shared.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_snn(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_snn(junk)


def test_model_based_normalization_fits_float16(tmp_path):
    """Model-based bounds grow by orders of magnitude with depth: as thresholds they overflow float16 (the
    published ResNet-20 had inf thresholds, then NaN spikes). diehl2015-model uses the weight form, whose float16
    checkpoint is finite; the threshold form is refused in float16 with the fix named, and nothing is written,
    or stored in float32 with ``dtype_fallback``."""
    from zoo.serialization import CheckpointError, load_snn, read_config, save_snn

    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    model = bn_from_data(timm.create_model("resnet20_cifar", num_classes=10), x)
    cfg = {"arch": "resnet20_cifar", "arch_kwargs": {"num_classes": 10}}
    thr = zoo.convert(model, x, "diehl2015-model", form="threshold", progress=False, config=cfg)
    assert max(float(n.threshold.max()) for n in thr.neurons().values()) > torch.finfo(torch.float16).max
    with pytest.raises(CheckpointError, match=r"threshold.*overflow float16.*float32.*form: weight"):
        save_snn(thr, tmp_path / "t16.safetensors", dtype=torch.float16)
    assert not list(tmp_path.iterdir())
    save_snn(thr, tmp_path / "t32.safetensors")  # float32 holds it
    # the pipeline's convert stage stores such a variant in float32 (dtype_fallback) instead of failing
    fell_back = save_snn(thr, tmp_path / "fb.safetensors", dtype=torch.float16, dtype_fallback=torch.float32)
    assert read_config(fell_back)["dtype"] == "float32"
    assert fell_back.read_bytes() == (tmp_path / "t32.safetensors").read_bytes()
    fell_back.unlink()

    snn = zoo.convert(model, x, "diehl2015-model", progress=False, config=cfg)
    assert snn.config["recipe"]["form"] == "weight"
    half = load_snn(save_snn(snn, tmp_path / "w16.safetensors", dtype=torch.float16))
    assert all(bool(torch.isfinite(t).all()) for t in half.state_dict().values() if t.is_floating_point())
    assert bool(torch.isfinite(half.run(x[:4], 8)).all())

    next(iter(thr.neurons().values())).threshold.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="inf or NaN"):
        save_snn(thr, tmp_path / "nan.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t32.safetensors", "w16.safetensors"]
