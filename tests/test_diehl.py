"""diehl2015-model (Diehl et al. 2015, model-based normalization) on a bias-free net like Diehl's FCN.

The published MNIST entries of this variant were at chance (9.80%, class 0's share) at every T: the output layer
was scaled by its own model-based bound (25x its input layer's on the ConvNet) and the input layer by the data's
largest value (2.8 for standardized MNIST) though a Poisson input spike is +-1/c, so the output neurons never
reached threshold and an all-zero spike count reads as class 0. Diehl et al.'s code leaves the output layer's
trained weights as they are (normalize_cnn_model: the output layer's scaling is commented out)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from tests.conftest import accuracy, train_digits

pytestmark = pytest.mark.usefixtures("one_thread")


class DiehlFCN(nn.Module):
    """Diehl's FCN in small: bias-free linear layers with ReLU, for 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128, bias=False), nn.ReLU(),
                                 nn.Linear(128, 128, bias=False), nn.ReLU(), nn.Linear(128, 10, bias=False))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def standardized(digits):
    """The digits standardized as the pipeline does (mean/std of the train split): values in about [-0.8, 2.0]."""
    xtr, ytr, xte, yte = digits
    mean, std = float(xtr.mean()), float(xtr.std())
    return (xtr - mean) / std, ytr, (xte - mean) / std, yte


@pytest.fixture(scope="module")
def fcn(standardized):
    torch.manual_seed(3)
    return train_digits(DiehlFCN(), standardized, epochs=20)


def test_diehl2015_model_output_layer_spikes_and_classifies(fcn, standardized):
    xtr, _, xte, yte = standardized
    x, y = xte[:200], yte[:200]
    ann = accuracy(fcn, x, y)
    snn = zoo.convert(fcn, xtr[:256], "diehl2015-model", progress=False)
    r = zoo.simulate(snn, (x, y), timesteps=[64, 256, 512], progress=False)
    # the output neurons fire within 64 steps: measured ANN 99.5%, SNN 97.5% at T=64, 256 and 512 (the
    # previous recipe, output scaled by its own bound and input by the data max: 54% at T=64, 97.5% at 256)
    assert r.accuracy[64] >= ann - 0.05, (ann, r.accuracy)
    assert r.accuracy[512] >= ann - 0.05, (ann, r.accuracy)
    # the output layer keeps its trained weights (Diehl et al.'s code); hidden layers are scaled
    linear = [m for m in snn.body.modules() if isinstance(m, nn.Linear)]
    torch.testing.assert_close(linear[-1].weight.detach(), fcn.net[5].weight.detach(), rtol=1e-5, atol=0)
    # Poisson input at the largest unclipped rate: c = 1/max|x| of the calibration images
    c = snn.config["recipe"]["poisson_rate"]
    assert c == pytest.approx(1.0 / float(xtr[:256].abs().max()), rel=1e-6) and c < 1
    # the first layer: the largest input one step of +-1/c spikes can bring is one threshold
    w1 = linear[0].weight.detach().float()
    assert float(w1.abs().sum(1).max()) / c == pytest.approx(1.0, rel=1e-5)


def test_poisson_input_at_the_auto_rate_codes_standardized_images_without_clipping(standardized):
    """With c = 1 a standardized image's bright pixels (x > 1) fire at probability 1 and their mean input is 1,
    not x (measured on MNIST, max 2.82: diehl2015-model's FCN reached 98.1% of 1,000 test images at T=1024 with
    c = 1 and 99.0% with c = 1/max|x|); with the rate diehl2015-model resolves, every pixel's mean is x."""
    from zoo.spiking.layer import PoissonEncoder

    xtr = standardized[0]
    x = xtr[:4]
    assert float(x.max()) > 1.5
    c = 1.0 / float(xtr[:256].abs().max())
    means = {}
    for rate in (1.0, c):
        enc = PoissonEncoder(rate, seed=0)
        enc.steps, enc.batch = 4000, x.shape[0]
        means[rate] = enc(x).reshape((4000,) + tuple(x.shape)).mean(0)
    bright = x > 1.2
    assert float((means[1.0][bright] - x[bright]).max()) < -0.15  # clipped: bright pixels read as 1
    torch.testing.assert_close(means[c], x, atol=0.12, rtol=0)   # unbiased (4,000 draws: sd <= 0.03)


def test_diehl2015_model_recipe_is_stored_with_its_output_setting(fcn, standardized, tmp_path):
    """normalize_output=False is stored in the checkpoint; recipes that leave it on keep their stored bytes
    (the field is stored only when off)."""
    from zoo.serialization import read_config, save_snn

    xtr = standardized[0]
    snn = zoo.convert(fcn, xtr[:64], "diehl2015-model", progress=False, config={"arch": "t", "arch_kwargs": {}})
    assert read_config(save_snn(snn, tmp_path / "m.safetensors"))["recipe"]["normalize_output"] is False
    for v in ["cao2015", "diehl2015-data", "rueckauer2017"]:
        assert "normalize_output" not in zoo.get_variant(v).stored()
