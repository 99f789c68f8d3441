"""snn-zoo on a CUDA device.

The development machines and CI have no GPU, so the device handling (where state, counters, calibration
histograms and probe tensors live) is checked on a virtual CUDA device (tests/virtual_cuda.py): tensors that
say ``cuda:0``, compute on the CPU, and fail as a CUDA build fails where devices are mixed. A run there must
give exactly the CPU's numbers. The tests at the end need a real GPU and skip without one; they check what the
virtual device cannot: CUDA numerics against the CPU.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import zoo
from zoo.conversion.calibration import calibrate
from zoo.conversion.graph import canonicalize
from zoo.spiking.network import exact_float32

from virtual_cuda import CUDA, DeviceMismatch, VirtualCuda, VirtualCudaTensor

TIMESTEPS = [1, 2, 4, 8, 16]


def _same(a, b) -> bool:
    """Equality of nested results, NaN equal to NaN (a silent layer's correlation)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ------------------------------------------------------------------------------------ the virtual device
def test_the_virtual_device_enforces_cuda_device_rules():
    with VirtualCuda():
        a = torch.ones(3, 4, device="cuda")
        assert isinstance(a, VirtualCudaTensor) and a.device == CUDA and a.is_cuda
        with pytest.raises(DeviceMismatch, match="same device"):
            a * torch.ones(4)  # a CPU vector with a CUDA tensor: an error on a GPU
        with pytest.raises(DeviceMismatch, match="same device"):
            torch.zeros(12, dtype=torch.float64).index_add_(0, torch.arange(12), a.reshape(-1).double())
        with pytest.raises(DeviceMismatch, match="indices"):
            torch.arange(5)[torch.tensor([0, 2], device="cuda")]
        assert (a * torch.tensor(2.0)).sum().item() == 24.0  # a 0-dim CPU tensor is allowed
        assert a[torch.tensor([0, 2])].shape == (2, 4)  # CPU indices into a CUDA tensor are allowed
        a.add_(1)
        assert a.sum().item() == 24.0 and a.tolist()[0] == [2.0] * 4
        with pytest.raises(TypeError):
            a.numpy()
        back = a.cpu()
        assert type(back) is torch.Tensor and back.device.type == "cpu" and float(back.sum()) == 24.0
        lin = nn.Linear(4, 2)
        ref = lin(torch.ones(3, 4))
        lin.to("cuda")
        assert lin.weight.device == CUDA
        assert torch.equal(lin(torch.ones(3, 4).to("cuda")).cpu(), ref)
        with pytest.raises(DeviceMismatch):
            lin(torch.ones(3, 4))  # CPU input into a CUDA layer


# ----------------------------------------------------------------------------------- simulation on CUDA
CASES = [("resnet", v) for v in ("cao2015", "diehl2015-model", "diehl2015-data", "rueckauer2017", "hu2018",
                                  "hunsberger2016", "low-latency")]
CASES += [("cnn", "rueckauer2017"), ("cnn", "cao2015")]
CASES += [("cnn", {"variant": "rueckauer2017", "maxpool": "spike_max", "readout": "softmax"})]


@pytest.mark.parametrize("net,variant", CASES, ids=lambda c: c if isinstance(c, str) else "softmax-spike_max")
def test_simulate_on_cuda_gives_the_cpu_result(net, variant, digits, digits_cnn, digits_resnet, one_thread):
    """Every recipe's encoder, neurons, pooling, readout, op counting and diagnostics on a CUDA device: no
    device mix-up anywhere, and exactly the CPU's accuracy, spikes, synaptic operations and correlations."""
    xtr, _, xte, yte = digits
    model = {"cnn": digits_cnn, "resnet": digits_resnet}[net]
    kw = dict(variant) if isinstance(variant, dict) else {"variant": variant}
    snn = zoo.convert(model, xtr[:128], progress=False, **kw)
    data = (xte[:24], yte[:24])
    ref = zoo.simulate(snn, data, TIMESTEPS, ann=model, diagnostics=True, batch_size=16, progress=False)
    with VirtualCuda():
        res = zoo.simulate(copy.deepcopy(snn), data, TIMESTEPS, ann=copy.deepcopy(model), diagnostics=True,
                           batch_size=16, device="cuda", progress=False)
    assert ref.spikes_per_image[TIMESTEPS[-1]] > 0
    assert _same(res.to_dict(), ref.to_dict())


def test_a_network_moved_to_cuda_between_chunks_carries_on(digits, digits_resnet, one_thread):
    """The simulation state (membrane potentials, refractory counters, readout totals) moves with ``.to()``:
    three steps on the CPU, then five on CUDA, then back, equal the same eight steps on the CPU."""
    xtr, _, xte, _ = digits
    snn = zoo.convert(digits_resnet, xtr[:128], variant="hunsberger2016", progress=False)  # LIF: refractory state
    x = xte[:8]
    with torch.no_grad():  # no autograd graph holding the weights: the virtual device swaps parameters
        snn.reset_state()
        ref = torch.cat([snn(x, steps=3), snn(x, steps=5)])  # the same chunks, so the same float sums
        snn.reset_state()
        first = snn(x, steps=3)
        with VirtualCuda():
            snn.to("cuda")
            second = snn(x.to("cuda"), steps=5).cpu()
            snn.to("cpu")
    assert torch.equal(torch.cat([first, second]), ref)
    assert all(t.device.type == "cpu" for m in snn.neurons().values() for t in (m.v,) if t is not None)


def test_spiking_layers_run_in_ieee_float32_on_cuda(digits, digits_resnet, one_thread):
    """torch runs float32 convolutions on CUDA as TF32 by default; inside the SNN's forward they are IEEE
    (spikes compare membranes with thresholds), and the user's settings are back afterwards."""
    xtr, _, xte, _ = digits
    snn = zoo.convert(digits_resnet, xtr[:64], variant="rueckauer2017", progress=False)
    seen = []
    first_conv = next(m for m in snn.body.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda m, a: seen.append((torch.backends.cudnn.conv.fp32_precision,
                                                                    torch.backends.cuda.matmul.fp32_precision)))
    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    with torch.no_grad():
        snn(xte[:2], steps=2)  # CPU: settings untouched
        with VirtualCuda():
            snn.to("cuda")
            snn.reset_state()
            snn(xte[:2].to("cuda"), steps=2)
    assert seen[0] == before and seen[-1] == ("ieee", "ieee")
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before
    with exact_float32(False):
        assert torch.backends.cudnn.conv.fp32_precision == before[0]


# ---------------------------------------------------------------------------------- conversion on CUDA
def test_calibration_on_cuda_gives_the_cpu_statistics_on_the_cpu(digits, digits_cnn, one_thread):
    xtr = digits[0][:200]
    ref = calibrate(canonicalize(digits_cnn), xtr, progress=False)
    with VirtualCuda():
        stats = calibrate(canonicalize(digits_cnn), xtr, device="cuda", progress=False)
    assert ref.keys() == stats.keys()
    for name, r in ref.items():
        s = stats[name]
        assert type(s.hist) is torch.Tensor and s.hist.device.type == "cpu"  # returned on the CPU
        assert torch.equal(s.hist, r.hist) and torch.equal(s.channel_max, r.channel_max) and s.count == r.count
        assert float(s.percentile(99.9)) == float(r.percentile(99.9))


@pytest.mark.parametrize("variant", ["rueckauer2017", "diehl2015-model", "low-latency"])
@pytest.mark.parametrize("given_stats", [False, True], ids=["calibrating", "given-stats"])
def test_convert_a_model_that_lives_on_cuda(variant, given_stats, digits, digits_cnn, one_thread):
    """A model (and calibration batch) on the GPU converts as its CPU copy does, also with precomputed
    statistics (the pipeline's convert stage), where no calibration moves the model; the SNN comes back on the
    CPU and the caller's model stays where it was."""
    xtr = digits[0][:128]
    stats = calibrate(canonicalize(digits_cnn), xtr, progress=False) if given_stats else None
    ref = zoo.convert(digits_cnn, xtr, variant=variant, stats=stats, progress=False)
    with VirtualCuda():
        model = copy.deepcopy(digits_cnn).to("cuda")
        snn = zoo.convert(model, xtr.to("cuda"), variant=variant, stats=stats, progress=False)
        assert all(p.device == CUDA for p in model.parameters())
    state, want = snn.state_dict(), ref.state_dict()
    assert state.keys() == want.keys()
    assert all(type(t) is torch.Tensor and torch.equal(t, want[k]) for k, t in state.items())


def test_evaluation_refuses_a_strategy_that_reruns_the_script():
    from zoo.config import EvaluationConfig
    from zoo.evaluation import evaluate_snn

    with pytest.raises(ValueError, match="starts the calling script again in every rank.*ddp_spawn"):
        evaluate_snn(None, None, [1], devices=2, strategy="ddp")
    with pytest.raises(ValueError, match="starts the calling script again"):
        EvaluationConfig(strategy="ddp_find_unused_parameters_true")
    assert EvaluationConfig(strategy="ddp_spawn").strategy == "ddp_spawn"


# ---------------------------------------------------------------------------------------- a real GPU
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@gpu
@pytest.mark.parametrize("variant", ["rueckauer2017", "cao2015", "low-latency"])
def test_gpu_simulation_agrees_with_the_cpu(variant, digits, digits_resnet):
    """On a GPU, in IEEE float32: the same images classified within 1 image at every T and spike counts within
    1% (summation order differs between the kernels, which can flip a spike that sits at its threshold)."""
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_resnet, xtr[:128], variant=variant, progress=False)
    data = (xte[:200], yte[:200])
    ref = zoo.simulate(snn, data, [1, 4, 16, 64], ann=digits_resnet, progress=False)
    res = zoo.simulate(copy.deepcopy(snn), data, [1, 4, 16, 64], ann=copy.deepcopy(digits_resnet), device="cuda",
                       progress=False)
    for t in ref.timesteps:
        assert abs(res.accuracy[t] - ref.accuracy[t]) <= 1 / 200 + 1e-9
        assert res.spikes_per_image[t] == pytest.approx(ref.spikes_per_image[t], rel=0.01)
    assert res.ann_accuracy == pytest.approx(ref.ann_accuracy, abs=1 / 200 + 1e-9)


@gpu
def test_gpu_calibration_and_conversion_agree_with_the_cpu(digits, digits_cnn):
    xtr = digits[0][:256]
    ref = calibrate(canonicalize(digits_cnn), xtr, progress=False)
    stats = calibrate(canonicalize(copy.deepcopy(digits_cnn)), xtr, device="cuda", progress=False)
    for name, r in ref.items():
        assert float(stats[name].percentile(99.9)) == pytest.approx(float(r.percentile(99.9)), rel=1e-3)
    snn = zoo.convert(copy.deepcopy(digits_cnn).cuda(), xtr.cuda(), variant="rueckauer2017", progress=False)
    assert all(t.device.type == "cpu" for t in snn.state_dict().values())
