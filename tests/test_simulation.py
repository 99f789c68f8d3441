"""Simulation and its measurements (zoo.simulation): spikes, synaptic operations, MACs and energy counted by
hand, diagnostics and plots, SimulationResult round trips, and results that do not depend on the batch size,
the chunking or (for random draws) anything but the seed."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import zoo
from zoo.spiking import DRAWS

from conftest import accuracy


def test_synops_macs_and_energy_by_hand():
    """Two-layer net: analog input -> Linear(4,3) -> IF -> Linear(3,2). Count everything by hand."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3, 4))
        model[0].bias.zero_()
    x = torch.tensor([[0.5, 1.0, 0.0, 0.3]])
    snn = zoo.convert(model, x, "rueckauer2017", norm="max", progress=False)
    r = zoo.simulate(snn, (x, torch.tensor([0])), timesteps=[10], progress=False)
    # hidden currents are (0.5, 1.0, 0.0), threshold 1.0 (max) -> 5 + 10 + 0 spikes in 10 steps
    assert r.spikes_per_image[10] == 15
    assert r.synops_per_image[10] == 15 * 2  # each spike reaches 2 outputs
    assert r.snn_macs_per_image[10] == 10 * 12  # analog first layer: 12 MACs at every step
    assert r.ann_macs_per_image == 12 + 6
    assert r.energy_ratio[10] == pytest.approx((120 * 4.6 + 30 * 0.9) / (18 * 4.6))


class _TwoHeads(nn.Module):
    """analog input -> Linear(4,3) -> ReLU, read by two linear heads (2 and 5 outputs) whose outputs are joined."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(3, 5)

    def forward(self, x):
        h = torch.relu(self.hidden(x))
        return torch.cat([self.a(h), self.b(h)], 1)


@pytest.mark.parametrize("steps", [10, 7])
def test_synops_of_an_input_read_by_two_layers_by_hand(steps):
    """A spike tensor read by two layers (as in Inception branches) drives the synapses of both, in every
    sub-chunk of the simulation: 15 spikes in 10 steps x (2 + 5) targets."""
    model = _TwoHeads().eval()
    with torch.no_grad():
        model.hidden.weight.copy_(torch.eye(3, 4))
        model.hidden.bias.zero_()
    x = torch.tensor([[0.5, 1.0, 0.0, 0.3], [0.5, 1.0, 0.0, 0.3]])
    snn = zoo.convert(model, x, "rueckauer2017", norm="max", progress=False)
    r = zoo.simulate(snn, (x, torch.tensor([0, 0])), timesteps=[10], chunk=steps, progress=False)
    assert r.spikes_per_image[10] == 15
    assert r.synops_per_image[10] == 15 * (2 + 5)
    assert r.snn_macs_per_image[10] == 10 * 12


def test_poisson_input_counts_accumulates_not_macs(digits_cnn, digits):
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_cnn, xtr[:256], "diehl2015-data", progress=False)
    r = zoo.simulate(snn, (xte[:16], yte[:16]), timesteps=[4], progress=False)
    assert r.snn_macs_per_image[4] == 0 and r.synops_per_image[4] > 0


def test_diagnostics_correlation_and_plots(tmp_path, digits_cnn, digits):
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_cnn, xtr, "rueckauer2017", progress=False)
    r = zoo.simulate(snn, (xte[:64], yte[:64]), timesteps=[16, 128], diagnostics=True, ann=digits_cnn, progress=False)
    assert r.correlation and min(r.correlation.values()) > 0.95
    assert r.correlation.keys() == snn.neurons().keys()  # one ANN-vs-SNN correlation per spiking layer
    assert r.ann_accuracy == accuracy(digits_cnn, xte[:64], yte[:64])
    from zoo.simulation import SimulationResult, plot_accuracy, plot_correlation

    assert plot_accuracy({"rueckauer2017": r}, tmp_path / "acc.png", r.ann_accuracy).stat().st_size > 1000
    assert plot_correlation(r, tmp_path / "corr.png").stat().st_size > 1000
    saved = json.loads(r.save(tmp_path / "r.json").read_text())
    assert SimulationResult.from_dict(saved) == r  # int T keys come back as ints


def test_simulate_rejects_bad_timesteps(digits_cnn, digits):
    snn = zoo.convert(digits_cnn, digits[0][:64], progress=False)
    with pytest.raises(ValueError, match="positive"):
        zoo.simulate(snn, (digits[2][:4], digits[3][:4]), timesteps=[0, 4], progress=False)


@pytest.mark.parametrize("variant", ["rueckauer2017", "hunsberger2016", "low-latency"])
def test_simulate_does_not_depend_on_batch_size_or_chunk(variant, digits_resnet, digits):
    """Batches and chunks only split the work: the same images give the same measurements whether simulated
    48 at a time in one call, 17 at a time 3 steps per call, or one by one 7 steps per call (LIF refractory
    counters, synaptic filters, rate-gated max-pool and readouts carry their state over the chunks). Measured
    on 100 images: identical accuracy at T=4/16/40, spikes equal to 1e-5 (batch 1 sums in another
    order). Poisson input has its own test below."""
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_resnet, xtr[:256], variant, progress=False)
    data = (xte[:48], yte[:48])
    ref, *others = [zoo.simulate(snn, data, [4, 16, 24], batch_size=b, chunk=c, progress=False)
                    for b, c in [(48, None), (17, 3), (1, 7)]]
    for r in others:
        assert r.images == ref.images == 48
        for t in (4, 16, 24):  # one image may flip where a membrane ties its threshold to the last bit
            assert abs(r.accuracy[t] - ref.accuracy[t]) <= 1 / 48 + 1e-9, (r.accuracy, ref.accuracy)
            assert r.spikes_per_image[t] == pytest.approx(ref.spikes_per_image[t], rel=1e-4)
            assert r.synops_per_image[t] == pytest.approx(ref.synops_per_image[t], rel=1e-4)
            assert r.energy_ratio[t] == pytest.approx(ref.energy_ratio[t], rel=1e-4)
        assert r.ann_macs_per_image == pytest.approx(ref.ann_macs_per_image)


@pytest.mark.parametrize("variant, overrides", [("cao2015", {}), ("rueckauer2017", {"readout": "softmax"})])
def test_random_draws_do_not_depend_on_batch_size_or_chunk(variant, overrides, digits_cnn, digits):
    """Poisson spike trains and spiking-softmax draws are a function of the seed and the image (counter-based
    draws), so batches, chunks and DDP shards only split the work, as for analog input; another seed draws
    other trains."""
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_cnn, xtr[:256], variant, progress=False, **overrides)
    data = (xte[:64], yte[:64])
    ref, *others = [zoo.simulate(snn, data, [8, 32], batch_size=b, chunk=c, progress=False)
                    for b, c in [(64, None), (64, None), (17, 3), (5, 32)]]
    for r in others:
        assert r.accuracy == ref.accuracy
        for t in (8, 32):
            assert r.spikes_per_image[t] == pytest.approx(ref.spikes_per_image[t], rel=1e-5)
    other = zoo.convert(digits_cnn, xtr[:256], variant, seed=1, progress=False, **overrides)
    with torch.no_grad():
        assert torch.equal(snn.run(xte[:16], 32), snn.run(xte[:16], 32))
        assert not torch.equal(other.run(xte[:16], 32), snn.run(xte[:16], 32))  # another seed, other draws
    assert snn.draws == DRAWS  # what the evaluate stage records, so zoo evaluate may replay it


def test_a_network_without_random_draws_says_so(digits_cnn, digits):
    """Analog input with a membrane readout draws nothing: ``draws`` is None (deterministic figures)."""
    xtr = digits[0]
    assert zoo.convert(digits_cnn, xtr[:256], "rueckauer2017", progress=False).draws is None
