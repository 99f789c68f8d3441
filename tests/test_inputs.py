"""Bad input stops calibration, conversion, simulation and loading with an error that names the fix, before
anything is computed, written or logged (zoo/inputs.py and the checks in the hub, the training's loader and
the CLI)."""
from __future__ import annotations

import json
import shutil

import pytest
import timm
import torch
from typer.testing import CliRunner

import zoo
import zoo.models  # noqa: F401  (registers resnet_mini)
from zoo import hub
from zoo.cli import app
from zoo.evaluation import evaluate_snn
from zoo.inputs import InputError
from zoo.serialization import CheckpointError, save_snn
from zoo.training import load_trained, write_trained


@pytest.fixture(scope="module")
def snn(digits, digits_cnn, one_thread):
    xtr, *_ = digits
    return zoo.convert(digits_cnn, xtr[:128], "rueckauer2017", progress=False)


def _poisoned(x: torch.Tensor, value: float, images=(3, 7)) -> torch.Tensor:
    x = x.clone()
    for i in images:
        x[i, 0, 2, 5] = value
    return x


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_calibration_images_are_refused(digits, digits_cnn, value):
    xtr, *_ = digits
    with pytest.raises(InputError, match=r"calibration data: 2 NaN or infinite values in 2 of the 128 images .*"
                                         r"first: image 3 .*nan_to_num"):
        zoo.convert(digits_cnn, _poisoned(xtr[:128], value), "rueckauer2017", progress=False)
    with pytest.raises(InputError, match="NaN or infinite"):  # also through a DataLoader of (x, y)
        loader = torch.utils.data.DataLoader(list(zip(_poisoned(xtr[:64], value), torch.zeros(64))), batch_size=32)
        zoo.calibrate(zoo.conversion.graph.canonicalize(digits_cnn), loader, progress=False)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_test_images_are_refused_not_counted_as_errors(snn, digits, value):
    *_, xte, yte = digits
    good = zoo.simulate(snn, (xte[:64], yte[:64]), [4], progress=False)
    assert good.images == 64
    with pytest.raises(InputError, match=r"test data: 2 NaN or infinite values in 2 of the 64 images"):
        zoo.simulate(snn, (_poisoned(xte[:64], value), yte[:64]), [4], progress=False)
    # a later batch is checked as well, and the Lightning evaluation stops the same way
    data = torch.utils.data.TensorDataset(torch.cat([xte[:32], _poisoned(xte[32:64], value, (5,))]), yte[:64])
    with pytest.raises(InputError, match=r"1 of the 32 images .*first: image 5"):
        zoo.simulate(snn, data, [4], batch_size=32, progress=False)
    with pytest.raises(InputError, match="NaN or infinite"):
        evaluate_snn(snn, data, [4], batch_size=32, progress=False)


def test_images_of_another_shape_are_refused(snn, digits):
    *_, xte, yte = digits
    wrong = torch.nn.functional.interpolate(xte[:16], size=(16, 16))
    with pytest.raises(InputError, match=r"test data: images of shape \[1, 16, 16\], but the model takes "
                                         r"\[1, 8, 8\].*zoo.test_data"):
        zoo.simulate(snn, (wrong, yte[:16]), [4], progress=False)
    with pytest.raises(InputError, match=r"images of shape \[3, 8, 8\]"):
        zoo.simulate(snn, (xte[:16].expand(-1, 3, -1, -1), yte[:16]), [4], progress=False)


def test_an_empty_test_set_is_refused_before_simulating(snn):
    empty = (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(InputError, match="test data is empty: .*at least one image"):
        zoo.simulate(snn, empty, [4], progress=False)
    with pytest.raises(InputError, match="test data is empty"):
        evaluate_snn(snn, torch.utils.data.TensorDataset(*empty), [4], progress=False)
    with pytest.raises(InputError, match="calibration data is empty"):
        zoo.convert(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), [], "rueckauer2017",
                    progress=False)


def test_weights_of_another_architecture_are_refused(tmp_path, digits):
    """A trained-model folder whose weights belong to another architecture: load_trained and `zoo convert DIR`
    name both files and the fix; the CLI writes no checkpoint."""
    a = timm.create_model("resnet_mini", num_classes=10)
    b = timm.create_model("vgg_mini", num_classes=10)
    write_trained(tmp_path / "a", a, {"arch": "resnet_mini", "arch_kwargs": {"num_classes": 10},
                                      "input_shape": [1, 8, 8]})
    write_trained(tmp_path / "b", b, {"arch": "vgg_mini", "arch_kwargs": {"num_classes": 10}})
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"do not fit resnet_mini .*different trainings"):
        load_trained(tmp_path / "a")
    out = tmp_path / "snn.safetensors"
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "a"), "-o", str(out)])
    assert r.exit_code == 2 and "do not fit resnet_mini" in r.output, r.output
    assert not out.exists()


def test_convert_refuses_a_dataset_the_model_was_not_trained_on(tmp_path):
    model = timm.create_model("resnet_mini", num_classes=10, in_chans=3)
    write_trained(tmp_path / "m", model, {"arch": "resnet_mini", "arch_kwargs": {"num_classes": 10, "in_chans": 3},
                                          "input_shape": [3, 32, 32], "dataset": {"source": "cifar10"}})
    out = tmp_path / "snn.safetensors"
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "m"), "-o", str(out), "--dataset", "digits"])
    assert r.exit_code == 2, r.output
    assert "its images are [1, 8, 8], but" in r.output and "[3, 32, 32] images (cifar10)" in r.output, r.output
    assert not out.exists()


def test_a_published_checkpoint_of_another_architecture_is_refused(digits, tmp_path, monkeypatch):
    """The hub loads a file only if its architecture and input shape are the ones its index entry states."""
    xtr, *_ = digits
    kwargs = {"num_classes": 10, "in_chans": 1}
    snn = zoo.convert(timm.create_model("resnet_mini", **kwargs).eval(), xtr[:64], "rueckauer2017", progress=False,
                      config={"arch": "resnet_mini", "arch_kwargs": kwargs})
    ckpt = tmp_path / "remote" / "m.rueckauer2017.safetensors"
    ckpt.parent.mkdir()
    save_snn(snn, ckpt)
    var = {"file": ckpt.name, "size": ckpt.stat().st_size, "sha256": hub.sha256_file(ckpt), "accuracy": {"4": 0.9},
           "energy_ratio": 0.5, "spikes_per_image": 1.0, "synops_per_image": 1.0, "test_images": 10,
           "recipe": {"neuron": "if", "reset": "subtract"}}
    entry = {"name": "m", "family": "resnet", "arch": "vgg_mini", "dataset": "digits", "input_shape": [1, 8, 8],
             "ann_accuracy": 0.9, "default_variant": "rueckauer2017", "variants": {"rueckauer2017": var}}
    index = {"schema": 1, "generated": "2026-01-01T00:00:00Z", "remote": ckpt.parent.as_uri(), "models": {"m": entry}}
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_REMOTE", raising=False)

    def load():
        return hub.load("m", index=json.loads(json.dumps(index)))

    with pytest.raises(CheckpointError, match=r"with arch 'resnet_mini', but the index entry of 'm' states "
                                              r"'vgg_mini'.*publish them together"):
        load()
    entry["arch"], entry["input_shape"] = "resnet_mini", [3, 8, 8]
    with pytest.raises(CheckpointError, match=r"input_shape \[1, 8, 8\], but the index entry of 'm' states \[3, 8, 8\]"):
        load()
    entry["input_shape"] = [1, 8, 8]
    assert load().zoo_variant == "rueckauer2017"
