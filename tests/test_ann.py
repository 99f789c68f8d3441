"""zoo.conversion.ann: the trained ANN inside a published checkpoint, and a new network started from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

import zoo
import zoo.models  # noqa: F401
from zoo.conversion.ann import ann_from_snn, init_from_ann
from zoo.conversion.graph import ConversionError
from zoo.hub import test_data as load_test_split
from zoo.models.layers import QCFS
from zoo.serialization import load_snn

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models/demo"


def _test_split(name: str, index: dict) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_test_split(name, index=index)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    return x, y


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("name", ["resnet-mini-digits", "vgg-mini-digits"])
def test_ann_rebuilt_from_a_threshold_form_checkpoint_scores_the_index_ann_accuracy(name):
    """The ANN rebuilt from a published threshold-form checkpoint is the trained one: on the demo nets it
    scores exactly the index's ANN accuracy on the whole test split."""
    index = json.loads((DEMO / "index.json").read_text())
    entry = index["models"][name]
    ann = ann_from_snn(load_snn(DEMO / name / "rueckauer2017.safetensors"))
    assert not any(hasattr(m, "threshold") for m in ann.modules())
    x, y = _test_split(name, index)
    assert len(y) == entry["evaluation"]["test_images"] == 360
    assert abs(_acc(ann, x, y) - entry["evaluation"]["ann_accuracy"]) < 0.5 / len(y), entry["evaluation"]
    # a checkpoint whose thresholds are not the ANN's (weight form: unit thresholds) is refused
    with pytest.raises(ConversionError, match="not an IF network with the ANN's weights"):
        ann_from_snn(load_snn(DEMO / name / "hu2018.safetensors"))


def test_ann_rebuilt_from_an_unnormalized_checkpoint_only_when_no_bias_was_dropped():
    """cao2015 (no normalization, biases dropped, Poisson input) keeps the weights of a bias-free ANN: rebuilt from
    vgg-mini-digits (no biases) it scores the index's ANN accuracy; from resnet-mini-digits, whose folded batch
    norm it dropped, it is refused."""
    index = json.loads((DEMO / "index.json").read_text())
    ann = ann_from_snn(load_snn(DEMO / "vgg-mini-digits" / "cao2015.safetensors"))
    x, y = _test_split("vgg-mini-digits", index)
    assert abs(_acc(ann, x, y) - index["models"]["vgg-mini-digits"]["evaluation"]["ann_accuracy"]) < 0.5 / len(y)
    with pytest.raises(ConversionError, match="dropped the ANN's biases"):
        ann_from_snn(load_snn(DEMO / "resnet-mini-digits" / "cao2015.safetensors"))


def test_zoo_load_ann_returns_the_published_models_ann(monkeypatch, tmp_path):
    """zoo.load(name, ann=True): the ANN inside a published checkpoint, with its variant and checkpoint hash."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    from zoo.hub import load, read_index

    index = read_index(DEMO / "index.json")
    ann = load("resnet-mini-digits", "rueckauer2017", index=index, ann=True)
    assert ann.zoo_variant == "rueckauer2017"
    assert ann.zoo_sha256 == index["models"]["resnet-mini-digits"]["variants"]["rueckauer2017"]["sha256"]
    assert not any(hasattr(m, "threshold") for m in ann.modules())
    x, y = _test_split("resnet-mini-digits", index)
    assert abs(_acc(ann, x, y) - index["models"]["resnet-mini-digits"]["evaluation"]["ann_accuracy"]) < 0.5 / len(y)


def test_a_qcfs_net_started_from_a_published_ann_computes_nearly_what_it_computes():
    """init_from_ann copies the folded weights into a bn=False net of the same architecture and starts its QCFS
    thresholds at the source's activation percentiles: before any fine-tuning, with many levels it agrees with
    the source on almost every test digit, and with L=8 it keeps most of its accuracy."""
    index = json.loads((DEMO / "index.json").read_text())
    ann = ann_from_snn(load_snn(DEMO / "resnet-mini-digits" / "rueckauer2017.safetensors"))
    x, y = _test_split("resnet-mini-digits", index)
    ref = _acc(ann, x, y)
    for levels, most in ((256, 0.005), (8, 0.05)):
        net = timm.create_model("resnet_mini", num_classes=10, in_chans=1, img_size=8, bn=False, act="qcfs",
                                act_kwargs={"levels": levels})
        counts = init_from_ann(net, ann, x[:200])
        qcfs = [m for m in net.modules() if isinstance(m, QCFS)]
        assert counts == {"layers": len(list(ann_layers(ann))), "thresholds": len(qcfs)}
        assert all(float(m.threshold.detach()) != 8.0 for m in qcfs)  # moved from the default
        assert _acc(net.eval(), x, y) >= ref - most, (levels, _acc(net, x, y), ref)


def ann_layers(ann):
    return [m for m in ann.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_init_from_ann_refuses_a_mismatched_target():
    ann = ann_from_snn(load_snn(DEMO / "resnet-mini-digits" / "rueckauer2017.safetensors"))
    x = torch.zeros(4, 1, 8, 8)
    with_bn = timm.create_model("resnet_mini", num_classes=10, in_chans=1, img_size=8, act="qcfs")
    with pytest.raises(ValueError, match="bn=False"):
        init_from_ann(with_bn, ann, x)
    other = timm.create_model("vgg_mini", num_classes=10, in_chans=1, img_size=8, bn=False)
    with pytest.raises(ValueError, match="the layers differ"):
        init_from_ann(other, ann, x)
    wider = timm.create_model("resnet_mini", num_classes=10, in_chans=1, img_size=8, bn=False, width=2.0)
    with pytest.raises(ValueError, match="in the source"):
        init_from_ann(wider, ann, x)
    qcfs = timm.create_model("resnet_mini", num_classes=10, in_chans=1, img_size=8, bn=False, act="qcfs")
    with pytest.raises(ValueError, match="pass data"):
        init_from_ann(qcfs, ann, None)


def test_a_bias_free_ann_starts_a_batch_normalized_soft_lif_net():
    """A bias-free source (cao2015 of vgg-mini-digits) folded no batch norm, so a target with its own batch norms
    (the soft-LIF recipe) takes its convolution and linear weights; its biases, where it has them, start at 0."""
    ann = ann_from_snn(load_snn(DEMO / "vgg-mini-digits" / "cao2015.safetensors"))
    net = timm.create_model("vgg_mini", num_classes=10, in_chans=1, img_size=8, bias=True, bn=True, act="softlif",
                            pool="avg")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    counts = init_from_ann(net, ann, None)
    src = dict((n, m) for n, m in ann.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    dst = dict((n, m) for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert counts == {"layers": len(dst), "thresholds": 0} and set(src) == set(dst)
    for name, m in dst.items():
        assert torch.equal(m.weight, src[name].weight.to(m.weight.dtype)), name
        assert m.bias is None or not m.bias.any(), name
    assert any(m.bias is not None for m in dst.values())  # the classifier's
