"""The conversion commands of the `zoo` CLI: `zoo variants` and `zoo convert` (the hub commands are tested in
test_hub.py, `zoo validate` in test_config.py, `zoo demo` / `zoo best` in test_pipeline.py)."""
from __future__ import annotations

import json
import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import zoo
import zoo.models  # noqa: F401  (registers resnet_mini with timm)
from conftest import accuracy, train_digits
from zoo.cli import app
from zoo.data import PreparedData, prepare
from zoo.serialization import load_snn
from zoo.training import write_trained


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _table(text: str) -> tuple[dict[int, float], float | None]:
    """T -> accuracy rows and the ANN row of SimulationResult.table()."""
    acc = {int(m[1]): float(m[2]) for m in re.finditer(r"^\s*(\d+)\s+([01]\.\d{4})\s", text, re.M)}
    ann = re.search(r"^\s*ANN\s+([01]\.\d{4})", text, re.M)
    return acc, float(ann[1]) if ann else None


def test_variants_lists_every_recipe_and_shows_one():
    out = _invoke("variants")
    assert out.exit_code == 0, out.output
    for name, recipe in zoo.variants().items():
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(recipe.reference)}$", out.output, re.M), name
    one = _invoke("variants", "low-latency", "--json")
    assert one.exit_code == 0 and json.loads(one.output) == zoo.get_variant("low-latency").model_dump()
    text = _invoke("variants", "hu2018")
    assert re.search(r"^\s+depth_compensation: 0.005\s", text.output, re.M), text.output
    every = json.loads(_invoke("variants", "--json").output)
    assert every == {k: v.model_dump() for k, v in zoo.variants().items()}
    bad = _invoke("variants", "low-latncy")
    assert bad.exit_code == 2 and "Did you mean 'low-latency'?" in bad.output


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory):
    """The digits as `zoo convert --dataset digits` prepares them (normalized), and resnet_mini trained on them."""
    path = tmp_path_factory.mktemp("digits")
    prepare("digits", path, calib_size=256, progress=False)
    data = PreparedData(path)
    xtr, ytr = data.train.tensors
    xte, yte = data.test.tensors
    torch.manual_seed(0)
    model = train_digits(timm.create_model("resnet_mini", num_classes=10), (xtr, ytr, None, None), epochs=8)
    return data, model, xte, yte


def test_convert_a_timm_arch_with_weights(digits_data, tmp_path):
    """`zoo convert ARCH --weights W`: the SNN checkpoint carries the variant with its --set overrides and the
    architecture, and the printed table is what the checkpoint measures when loaded back."""
    data, model, xte, yte = digits_data
    weights, out = tmp_path / "w.safetensors", tmp_path / "snn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    r = _invoke("convert", "resnet_mini", "--weights", weights, "-o", out, "--variant", "low-latency",
                "--set", "percentile=99.9", "--set", "v_init=0.25", "--timesteps", "8,32", "--test-images", 128)
    assert r.exit_code == 0, r.output
    acc, ann = _table(r.output)
    assert set(acc) == {8, 32} and ann == pytest.approx(accuracy(model, xte[:128], yte[:128]), abs=1e-4)
    snn = load_snn(out)
    recipe = snn.config["recipe"]
    assert (recipe["name"], recipe["percentile"], recipe["v_init"], recipe["channel_wise"]) == \
        ("low-latency", 99.9, 0.25, True)
    assert {n.v_init for n in snn.neurons().values()} == {0.25}
    assert snn.config["arch"] == "resnet_mini" and snn.config["preprocess"]["mean"] == data.mean
    again = zoo.simulate(snn, (xte[:128], yte[:128]), timesteps=[8, 32], progress=False).accuracy
    assert {t: round(a, 4) for t, a in again.items()} == acc
    assert acc[32] >= ann - 0.05, (acc, ann)  # measured: ANN 1.0, T=32 0.984 (T=8 0.75)


def test_convert_a_trained_model_directory(digits_data, tmp_path):
    """`zoo convert DIR` (a train-stage output): the architecture and its kwargs come from meta.json;
    --test-images 0 writes the checkpoint without evaluating."""
    data, model, *_ = digits_data
    write_trained(tmp_path / "trained", model, {"arch": "resnet_mini", "arch_kwargs": {"num_classes": 10}})
    out = tmp_path / "snn.safetensors"
    r = _invoke("convert", tmp_path / "trained", "-o", out, "--variant", "hunsberger2016", "--test-images", 0)
    assert r.exit_code == 0, r.output
    assert "accuracy" not in r.output and f"wrote {out}" in r.output
    snn = load_snn(out)
    assert snn.config["recipe"]["name"] == "hunsberger2016" and snn.config["arch_kwargs"] == {"num_classes": 10}


@pytest.mark.parametrize("args,message", [
    (["--variant", "low-latncy"], "Did you mean 'low-latency'?"),
    (["--set", "percentile"], "use FIELD=VALUE"),
    (["--set", "percentile=120"], "'percentile': 120"),
    (["--set", "bogus=1"], "unknown option 'bogus'"),
    (["--weights", "w.pt"], "nothing is unpickled"),
    (["--weights", "missing.safetensors"], "no such file"),
    (["--timesteps", "8,0"], "positive integers"),
    (["--timesteps", "eight"], "positive integers"),
    (["--dataset", "svhn"], "unknown dataset source 'svhn'"),
])
def test_convert_rejects_bad_input_and_writes_nothing(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _invoke("convert", "resnet_mini", "-o", "snn.safetensors", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert not (tmp_path / "snn.safetensors").exists()


def test_convert_names_unknown_architectures_and_wrong_outputs(tmp_path):
    r = _invoke("convert", "resnet_mni", "-o", tmp_path / "snn.safetensors")
    assert r.exit_code == 2 and "did you mean resnet_mini" in r.output, r.output
    r = _invoke("convert", "resnet_mini", "-o", tmp_path / "snn.pt")
    assert r.exit_code == 2 and "snn.safetensors" in r.output, r.output
    save_file({"nope": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    r = _invoke("convert", "resnet_mini", "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "snn.safetensors")
    assert r.exit_code == 2 and "do not fit resnet_mini" in r.output, r.output
    assert not (tmp_path / "snn.safetensors").exists()
