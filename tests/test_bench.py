"""The benchmark scripts' own building blocks, where a wrong one would make a whole table wrong."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from zoo.hub import test_data as load_test_split
from zoo.serialization import load_snn

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["resnet-mini-digits", "vgg-mini-digits"])
def test_ann_rebuilt_from_a_threshold_form_checkpoint_scores_the_index_ann_accuracy(name):
    """bench/depth_compensation.py converts the ANN it rebuilds from a published checkpoint; that ANN must be
    the trained one: on the demo nets it scores exactly the index's ANN accuracy on the whole test split."""
    dc = _bench("depth_compensation")
    index = json.loads((ROOT / "models/demo/index.json").read_text())
    entry = index["models"][name]
    ann = dc.ann_from_threshold_form(load_snn(ROOT / "models/demo" / name / "rueckauer2017.safetensors"))
    assert not any(hasattr(m, "threshold") for m in ann.modules())
    data = load_test_split(name, index=index)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    with torch.no_grad():
        acc = float((ann(x).argmax(1) == y).float().mean())
    assert len(y) == entry["evaluation"]["test_images"] == 360
    assert abs(acc - entry["evaluation"]["ann_accuracy"]) < 0.5 / len(y), (acc, entry["evaluation"])
    # a checkpoint whose thresholds are not the ANN's (weight form: unit thresholds) is refused
    with pytest.raises(SystemExit, match="not a plain threshold-form IF network"):
        dc.ann_from_threshold_form(load_snn(ROOT / "models/demo" / name / "hu2018.safetensors"))
