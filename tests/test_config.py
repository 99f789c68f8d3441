"""params.yaml validation: every typo fails fast with the key, the bad value and the allowed values."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from zoo.config import ZOO_ARCHS, ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert set(p.zoos["demo"].models) <= set(p.models)
    assert {"cao2015", "diehl2015-model", "diehl2015-data", "rueckauer2017", "hu2018", "hunsberger2016"} <= set(p.variants)
    assert p.recipe("hu2018").form == "weight"


def test_zoo_archs_match_the_registry():
    import timm

    import zoo.models

    assert set(ZOO_ARCHS) == set(zoo.models.ARCHS)
    assert all(timm.is_model(a) for a in ZOO_ARCHS)


@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r["models"]["vgg-mini-digits"].update(arch="vgg_mni"), ["models.vgg-mini-digits.arch", "'vgg_mni'", "vgg_mini"]),
    (lambda r: r["models"]["vgg-mini-digits"].update(dataset="digts"), ["models.vgg-mini-digits.dataset", "'digts'", "Did you mean 'digits'"]),
    (lambda r: r["variants"].update(mine={"base": "rueckauer2071"}), ["variants.mine.base", "'rueckauer2071'", "rueckauer2017"]),
    (lambda r: r["variants"].update(mine={"base": "rueckauer2017", "overrides": {"percentile": 120}}), ["variants.mine.overrides", "percentile", "120"]),
    (lambda r: r["variants"].update(mine={"base": "rueckauer2017", "overrides": {"reset": "foo"}}), ["'foo'", "'subtract', 'zero'"]),
    (lambda r: r["evaluation"].update(timesteps=[0, 4]), ["evaluation.timesteps", "T > 0"]),
    (lambda r: r["evaluation"].update(timestep=[4]), ["evaluation.timestep", "unknown key"]),
    (lambda r: r["datasets"]["digits"].update(source="digitz"), ["datasets.digits.source", "'digitz'", "'digits'", "'mnist'"]),
    (lambda r: r["zoos"]["demo"]["models"].append("nope"), ["zoos.demo.models", "'nope'", "vgg-mini-digits"]),
    (lambda r: r["zoos"]["demo"]["variants"].append("hu2019"), ["zoos.demo.variants", "'hu2019'", "hu2018"]),
    (lambda r: r["zoos"]["demo"]["variants"].append("hu2018"), ["zoos.demo.variants", "once"]),
    (lambda r: r["tracking"].update(uri="file:./mlruns"), ["tracking.uri", "sqlite"]),
    (lambda r: r["tracking"].update(champion_at_T=48), ["tracking.champion_at_T", "48", "evaluation.timesteps"]),
    (lambda r: r["evaluation"].update(test_images={"cifar": 100}), ["evaluation.test_images", "'cifar'", "cifar10"]),
    (lambda r: r["evaluation"].update(test_images={"mnist": 0}), ["test_images", "positive"]),
])
def test_invalid_params_fail_fast_and_explain(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert time.perf_counter() - t0 < 1.0
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_validate_cli_is_fast_and_clear(tmp_path):
    path = _write(tmp_path, lambda r: r["models"]["resnet-mini-digits"].update(arch="resnet_mnii"))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import sys; from zoo.config import load_params, ConfigError\n"
                          "try: load_params(sys.argv[1])\nexcept ConfigError as e: print(e); sys.exit(2)", str(path)],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert out.returncode == 2 and "Did you mean 'resnet_mini'" in out.stdout
    assert wall < 3.0, wall  # interpreter start included; the validation itself is checked < 1 s above


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_dvc_plots_and_stages_cover_params():
    """dvc.yaml iterates over params.yaml: every model and variant gets its stages."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for z in params["zoos"]:
        for kind in ("convert", "evaluate"):
            assert dvc["stages"][f"{kind}-{z}"]["matrix"] == {"model": f"${{zoos.{z}.models}}",
                                                              "variant": f"${{zoos.{z}.variants}}"}
        assert dvc["stages"][f"package-{z}"]["matrix"] == {"model": f"${{zoos.{z}.models}}"}
    assert set(dvc["stages"]) >= {"prepare", "train", "export", "calibrate"}


def test_publish_stages_depend_on_every_packaged_model():
    """publish-<zoo> lists its models' folders by hand (DVC cannot expand a list into deps): they must be those
    of zoos.<zoo>.models, in a folder that does not overlap the stage's own outputs."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, z in params["zoos"].items():
        stage = dvc["stages"][f"publish-{name}"]
        folders = [d for d in stage["deps"] if d.startswith(z["dir"] + "/")]
        assert folders == [f"{z['dir']}/{m}" for m in z["models"]], f"dvc.yaml publish-{name}.deps"
        assert [next(iter(o)) for o in stage["outs"]] == [f"{z['dir']}/index.json", f"{z['dir']}/README.md"]
        assert stage["vars"] == [{"zoo": name}] and stage["cmd"] == "python pipeline/publish.py ${zoo}"


def test_dvc_top_level_plots_cover_every_model_and_variant():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    plots = {list(p)[0]: list(p.values())[0] for p in dvc["plots"]}
    for zoo_name, z in params["zoos"].items():
        for m in z["models"]:
            ys = plots[f"{m} accuracy vs T"]["y"]
            assert ys == {f"models/eval/{zoo_name}/{m}/{v}.csv": "accuracy" for v in z["variants"]}


def test_full_zoo_without_data_stops_at_once_naming_the_path(tmp_path):
    import os

    env = dict(os.environ, ZOO_DATA_DIR=str(tmp_path / "no-data"))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "check-data", "--zoo", "full"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert str(tmp_path / "no-data") in out.stderr and "ZOO_DATA_DIR" in out.stderr, out.stderr
    assert time.perf_counter() - t0 < 30


def test_test_images_per_dataset(tmp_path):
    p = load_params(_write(tmp_path, lambda r: r["evaluation"].update(test_images={"cifar10": 1000, "mnist": None})))
    assert p.evaluation.images_for("cifar10") == 1000
    assert p.evaluation.images_for("mnist") is None and p.evaluation.images_for("digits") is None
    p = load_params(_write(tmp_path, lambda r: r["evaluation"].update(test_images=50)))
    assert p.evaluation.images_for("digits") == 50
