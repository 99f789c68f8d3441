"""ONNX export (zoo.export): parity with PyTorch in onnxruntime, a free batch size, atomic single-file output,
the TorchScript fallback, clear parity failures, and one exported SNN timestep looped in onnxruntime."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx import numpy_helper

import zoo
import zoo.models  # noqa: F401 - registers the architectures
from zoo import export as zx
from zoo.interchange import onnx as zstep
from zoo.export import ExportError, ParityError, assert_parity, check_parity, export_onnx, onnx_info


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=10).eval()


def _only_file(directory, name):
    files = sorted(p.name for p in directory.iterdir())
    assert files == [name], f"expected only {name} (no temp or external .data files), found {files}"


@pytest.mark.parametrize("name,shape", [("resnet20_cifar", (3, 32, 32)), ("vgg_mini", (1, 8, 8)),
                                        ("inception_cifar", (3, 32, 32))])
def test_export_parity(tmp_path, name, shape):
    model = _model(name)
    path = export_onnx(model, torch.randn(2, *shape), tmp_path / f"{name}.onnx")
    assert path == tmp_path / f"{name}.onnx" and not model.training
    _only_file(tmp_path, path.name)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    info = onnx_info(path)
    assert info["exporter"] == "dynamo" and info["dynamic_batch"] and info["example_batch"] == 2
    dim0 = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim0.HasField("dim_value"), "the batch dimension must be symbolic"

    torch.manual_seed(1)
    report = assert_parity(model, path, torch.randn(5, *shape))
    assert report["passed"] and report["batch"] == 5 and report["exporter"] == "dynamo"
    assert report["opset"] == info["opset"] and report["opset"] >= 17
    assert report["max_abs_diff"] < 1e-3 and report["argmax_agreement"] == 1.0
    assert set(report) >= {"max_abs_diff", "max_rel_diff", "argmax_agreement", "batch", "opset", "exporter", "passed"}


def test_parity_uses_a_batch_other_than_the_example(tmp_path):
    model = _model("vgg_mini")
    path = export_onnx(model, torch.randn(4, 1, 8, 8), tmp_path / "m.onnx")
    report = check_parity(model, path, torch.randn(4, 1, 8, 8))
    assert report["passed"] and report["batch"] == 5


def test_training_mode_is_restored_and_eval_is_exported(tmp_path):
    model = _model("vgg_mini").train()
    path = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
    assert model.training
    assert check_parity(model, path, torch.randn(3, 1, 8, 8))["passed"]  # dropout/BN in eval on both sides
    assert model.training


def test_perturbed_initializer_raises_parity_error(tmp_path):
    model = _model("vgg_mini")
    path = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr += 0.05 * np.sign(arr)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, str(path))

    report = check_parity(model, path, torch.randn(6, 1, 8, 8))
    assert not report["passed"] and report["max_abs_diff"] > 1e-3
    with pytest.raises(ParityError) as exc:
        assert_parity(model, path, torch.randn(6, 1, 8, 8), atol=1e-3, rtol=1e-3)
    msg = str(exc.value)
    assert "does not match PyTorch" in msg and "max abs diff" in msg and "atol=0.001" in msg and "rtol=0.001" in msg
    assert f"{exc.value.report['max_abs_diff']:.3g}" in msg
    assert isinstance(exc.value, RuntimeError) and not isinstance(exc.value, AssertionError)


def test_zero_tolerance_on_a_modified_model_fails(tmp_path):
    model = _model("vgg_mini")
    path = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
    with torch.no_grad():
        model.fc.bias.add_(1e-4)  # the PyTorch side drifts a little after export
    with pytest.raises(ParityError, match=r"exceeds the tolerance atol=0 \+ rtol=0"):
        assert_parity(model, path, torch.randn(3, 1, 8, 8), atol=0.0, rtol=0.0)
    assert check_parity(model, path, torch.randn(3, 1, 8, 8), atol=1e-3)["passed"]


def test_fixed_batch_export_fails_parity_on_other_batch(tmp_path):
    model = _model("vgg_mini")
    path = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx", dynamic_batch=False)
    assert not onnx_info(path)["dynamic_batch"]
    dim0 = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_value == 2
    assert check_parity(model, path, torch.randn(2, 1, 8, 8))["passed"]
    with pytest.raises(ParityError, match="onnxruntime failed"):
        assert_parity(model, path, torch.randn(3, 1, 8, 8))


def test_fallback_to_torchscript_is_recorded(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated torch.export failure")

    monkeypatch.setattr(zx, "_export_dynamo", broken)
    model = _model("resnet_mini")
    with pytest.warns(RuntimeWarning, match="fell back to the torchscript exporter"):
        path = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
    _only_file(tmp_path, "m.onnx")
    info = onnx_info(path)
    assert info["exporter"] == "torchscript" and info["dynamic_batch"]
    assert "simulated torch.export failure" in info["metadata"]["zoo.export_fallback_reason"]
    report = assert_parity(model, path, torch.randn(7, 1, 8, 8))
    assert report["exporter"] == "torchscript" and report["opset"] == zx.DEFAULT_TORCHSCRIPT_OPSET


class _Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        raise ValueError("cannot run")


def test_failed_export_keeps_the_old_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ExportError, match="dynamo: .*torchscript: "):
            export_onnx(_Broken(), torch.randn(2, 4), target)
    assert target.read_bytes() == b"old"
    _only_file(tmp_path, "m.onnx")
    with pytest.raises(ValueError, match="exporter="):
        export_onnx(_model("vgg_mini"), torch.randn(2, 1, 8, 8), tmp_path / "x.onnx", exporter="tflite")


_EXPORT_FROM_CHECKOUT = """
import sys, torch, timm
import zoo.models
from zoo.export import export_onnx
torch.manual_seed(0)
export_onnx(timm.create_model("resnet_mini", num_classes=10).eval(), torch.randn(2, 1, 8, 8), sys.argv[1])
"""


def test_export_does_not_depend_on_where_the_checkout_lies(tmp_path):
    """The same model exported from two copies of the package at different paths gives byte-identical files
    without those paths in them (the dynamo exporter's per-node stack traces are removed)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(zoo.__file__).parent
    outs = []
    for where in ("a", "checkout-b"):
        root = tmp_path / where
        shutil.copytree(src, root / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
        out = tmp_path / f"{where}.onnx"
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", _EXPORT_FROM_CHECKOUT, str(out)], cwd=root, env=env, check=True,
                       capture_output=True)
        data = out.read_bytes()
        assert str(root).encode() not in data, f"{out.name} names the checkout's directory {root}"
        outs.append(data)
    assert outs[0] == outs[1]
    proto = onnx.load_from_string(outs[0])
    assert not [p.key for n in proto.graph.node for p in n.metadata_props if "stack_trace" in p.key]
    assert any(p.key == "namespace" for n in proto.graph.node for p in n.metadata_props)  # the rest stays


@pytest.mark.parametrize("name,variant", [("vgg_mini", "rueckauer2017"), ("resnet_mini", "low-latency"),
                                          ("resnet_mini", "li2021"), ("vgg_mini", "li2021")])
def test_snn_step_looped_in_onnxruntime_matches_run(tmp_path, name, variant):
    """low-latency: per-channel thresholds and membranes starting at half threshold; li2021: calibrated initial
    membranes (v_offset), which the exported initial state must carry."""
    model = _model(name)
    torch.manual_seed(3)
    snn = zoo.convert(model, torch.rand(64, 1, 8, 8), variant, progress=False)
    path = zstep.export_snn_step(snn, torch.rand(2, 1, 8, 8), tmp_path / "step.onnx")
    _only_file(tmp_path, "step.onnx")
    info = onnx_info(path)
    assert info["inputs"][0] == "input" and info["outputs"][0] == "current"
    assert len(info["inputs"]) == len(info["outputs"]) >= 2 and info["metadata"]["zoo.kind"] == "snn_step"
    x = torch.rand(5, 1, 8, 8)
    T = 24
    ref = snn.run(x, T, chunk=8).numpy()
    got = zstep.run_snn_onnx(path, x, T)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4 * T, rtol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_zoo_export_of_a_published_model_runs_in_onnxruntime(tmp_path, monkeypatch):
    """`zoo export NAME -o F.onnx`: onnxruntime, looping the step graph, scores what zoo.simulate scores on the
    same test images (the demo zoo's default variant of the ResNet, T=32), within one image."""
    from pathlib import Path

    from typer.testing import CliRunner

    from zoo.cli import app

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("ZOO_INDEX", str(root / "models/demo/index.json"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_REMOTE", raising=False)
    out = tmp_path / "snn.onnx"
    r = CliRunner().invoke(app, ["export", "resnet-mini-digits", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert onnx_info(out)["metadata"]["zoo.recipe"] == zoo.load("resnet-mini-digits").config["recipe"]["name"]
    data = zoo.test_data("resnet-mini-digits")
    x = torch.stack([data[i][0] for i in range(160)])
    y = torch.tensor([int(data[i][1]) for i in range(160)])
    snn = zoo.load("resnet-mini-digits")
    sim = zoo.simulate(snn, (x, y), [32], progress=False).accuracy[32]
    ort = float((torch.from_numpy(zstep.run_snn_onnx(out, x, 32)).argmax(1) == y).float().mean())
    assert sim > 0.9 and abs(ort - sim) <= 1 / 160, (ort, sim)


@pytest.mark.parametrize("args,code,message", [
    (["resnet-mini-digits", "-v", "cao2015", "-o", "x.onnx"], 1, "analog encoder only, not PoissonEncoder"),
    (["vgg-mini-digits", "-v", "hunsberger2016", "-o", "x.onnx"], 1, "stateful LIFNode is not supported"),
    (["resnet-mini-digits", "-f", "onnx", "-o", "x.nir"], 2, "ends in .onnx"),
    (["resnet-mini-digits", "-o", "x.h5"], 2, "name a .onnx or .nir file"),
    (["resnet-mini-digits", "-f", "tflite", "-o", "x.onnx"], 2, "choose one of onnx"),
    (["missing.safetensors", "-o", "x.onnx"], 2, "no such checkpoint"),
    (["resnet-mini-digit", "-o", "x.onnx"], 2, "no model 'resnet-mini-digit'"),
])
def test_zoo_export_refuses_what_it_cannot_express_and_writes_nothing(args, code, message, tmp_path, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from zoo.cli import app

    monkeypatch.setenv("ZOO_INDEX", str(Path(__file__).resolve().parents[1] / "models/demo/index.json"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_REMOTE", raising=False)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["export", *args])
    assert r.exit_code == code and message in r.output, r.output
    assert not list(tmp_path.glob("x.*"))
