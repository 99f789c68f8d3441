"""Directly trained SNNs (Fang et al. 2021): a PLIF ConvNet trained with Lightning through zoo.spiking's own
neurons, then packed by the fang2021 recipe (batch norm folded, trained neurons kept), exported and reloaded."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import zoo.models  # noqa: F401  (registers plif_convnet)
from zoo.conversion.converter import convert
from zoo.conversion.graph import ConversionError
from zoo.data import PreparedData
from zoo.serialization import load_snn, save_snn
from zoo.spiking import MultiStep, PLIFNode, multi_step
from tests.conftest import assert_unrolled_onnx_parity, split_tensors, train_direct_digits
from zoo.training import load_trained, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

ARCH_KW = {"channels": [16, 32], "hidden": 64, "img_size": 8, "drop_rate": 0.2}
T = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, PreparedData, dict]:
    """plif_convnet trained directly on digits as an SNN of T=4 steps (8 epochs, ~2 s)."""
    return train_direct_digits(tmp_path_factory.mktemp("direct"), ARCH_KW, T, lr=0.005)



def test_direct_training_on_digits_reaches_93_percent_at_t4(trained):
    """Measured: 95.6 % of the 360 test digits at T=4 after 8 epochs (seed 0)."""
    out, data, meta = trained
    assert meta["timesteps"] == T and meta["test_accuracy"] >= 0.93, meta
    model = load_trained(out)
    nodes = [m for m in model.modules() if isinstance(m, PLIFNode)]
    assert len(nodes) == 3
    assert all(abs(n.tau - 2.0) > 1e-3 for n in nodes), "the time constants did not learn"
    x, y = split_tensors(data)
    with torch.no_grad():
        acc = float((MultiStep(model, T)(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(meta["test_accuracy"])


def test_multi_step_backpropagates_through_time_to_tau_and_weights():
    torch.manual_seed(0)
    net = timm.create_model("plif_convnet", **ARCH_KW)
    out = multi_step(net, torch.randn(5, 1, 8, 8), 3)
    assert out.shape == (5, 10)
    out.square().sum().backward()
    nodes = [m for m in net.modules() if isinstance(m, PLIFNode)]
    assert all(n.w.grad is not None and n.w.grad.abs() > 0 for n in nodes)
    assert net.features[0][0].weight.grad.abs().sum() > 0
    # the state is reset at every call: the same images give the same scores
    with torch.no_grad():
        a, b = multi_step(net, torch.ones(2, 1, 8, 8), 3), multi_step(net, torch.ones(2, 1, 8, 8), 3)
    assert torch.equal(a, b)


def test_fang2021_keeps_the_trained_snn_and_reloads(trained, tmp_path):
    """The packed SNN (BN folded, the same PLIF neurons) scores what the trained net scored at its T, and a
    checkpoint round trip changes no score."""
    out, data, meta = trained
    model = load_trained(out)
    x, y = split_tensors(data)
    snn = convert(model, x[:64], "fang2021", config={"arch": meta["arch"], "arch_kwargs": meta["arch_kwargs"]},
                  progress=False)
    assert [type(n) for n in snn.neurons().values()] == [PLIFNode] * 3
    assert [n.tau for n in snn.neurons().values()] == pytest.approx(
        [m.tau for m in model.modules() if isinstance(m, PLIFNode)])
    with torch.no_grad():
        ref = MultiStep(model, T)(x)
    scores = snn.run(x, T)
    assert float((scores.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99
    torch.testing.assert_close(scores / T, ref, atol=1e-4, rtol=1e-4)
    save_snn(snn, tmp_path / "plif.safetensors")
    assert torch.equal(load_snn(tmp_path / "plif.safetensors").run(x, T), scores)


def test_a_direct_snn_is_not_normalized_and_an_ann_not_kept(trained):
    out, data, _ = trained
    x, _ = split_tensors(data)
    with pytest.raises(ConversionError, match="fang2021"):
        convert(load_trained(out), x[:32], "rueckauer2017", progress=False)
    relu = timm.create_model("plif_convnet", act="relu", **ARCH_KW).eval()
    with pytest.raises(ConversionError, match="PLIF"):
        convert(relu, x[:32], "fang2021", progress=False)
    with pytest.raises(ValueError, match="act='plif'"):
        train("plif_convnet", dict(ARCH_KW, act="relu"), out.parent / "data", out.parent / "relu", epochs=1,
              timesteps=T, progress=False)


def test_onnx_export_of_the_unrolled_snn(trained, tmp_path):
    out, data, _ = trained
    assert_unrolled_onnx_parity(out, data, T, tmp_path)
