"""The converter end to end (zoo.convert, zoo.conversion.converter and .graph): accuracy on digits, convergence
on timm nets, the threshold and weight forms, depth compensation, and every error path. The variants are in
test_variants.py, calibration in test_calibration.py, simulation and measurements in test_simulation.py,
checkpoints in test_serialization.py."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

import zoo
from zoo.conversion import ConversionError, calibrate, canonicalize
from zoo.conversion.graph import act_points
from zoo.simulation import rate_model
from zoo.spiking import Scale

from conftest import accuracy, bn_from_data


# ------------------------------------------------------------------------------------ digits accuracy
@pytest.mark.parametrize("net", ["digits_cnn", "digits_resnet"])
def test_rueckauer_snn_matches_ann_on_digits(net, digits, request):
    model = request.getfixturevalue(net)
    xtr, ytr, xte, yte = digits
    ann_acc = accuracy(model, xte, yte)
    assert ann_acc > 0.95
    snn = zoo.convert(model, xtr, "rueckauer2017", progress=False)
    r = zoo.simulate(snn, (xte, yte), timesteps=[16, 256], progress=False)
    assert r.accuracy[256] >= ann_acc - 0.01, (ann_acc, r.accuracy)
    assert 1 - r.accuracy[256] < 1 - r.accuracy[16], r.accuracy


def test_canonical_graph_is_exact(digits_resnet, digits):
    x = digits[2][:50]
    gm = canonicalize(digits_resnet)
    assert torch.allclose(gm(x), digits_resnet(x), atol=1e-5)
    names = list(act_points(gm))
    assert len(names) == 6 and names[-1] == "output_probe"  # 5 ReLUs (functional) + the output probe
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())  # all folded


# ------------------------------------------------------------------------------------- timm models
@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("vgg16_bn", 32), ("inception_v3", 75)])
def test_timm_snn_converges_to_ann_logits(arch, size):
    torch.manual_seed(0)
    model = bn_from_data(timm.create_model(arch, num_classes=10), torch.rand(16, 3, size, size))
    x = torch.rand(16, 3, size, size)
    snn = zoo.convert(model, x, "rueckauer2017", norm="max", progress=False)
    assert snn.config["recipe"]["reset"] == "subtract" and snn.config["recipe"]["encoder"] == "analog"
    xe = x[:4]
    with torch.no_grad():
        ann = model(xe).flatten()
        snn.reset_state()
        corr, done = {}, 0
        for T in (32, 512):
            while done < T:
                scores = snn(xe, steps=32)
                done += 32
            est = (scores[-1] / T).flatten()
            corr[T] = torch.corrcoef(torch.stack([est, ann]))[0, 1].item()
    assert corr[512] >= 0.99, corr
    assert corr[512] > corr[32], corr


# ------------------------------------------------------------------- threshold vs weight form
class InceptionStyle(nn.Module):
    """Branches of different depth concatenated, a pooling branch, max-pool, then a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.b3 = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(8, 2, 1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mix = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(12 * 16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)
        x = self.pool(x)
        x = torch.relu(self.mix(x) + x)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("net", ["resnet", "inception"])
@pytest.mark.parametrize("channel_wise", [False, True])
def test_threshold_and_weight_forms_emit_identical_spikes(net, channel_wise, digits, digits_resnet):
    torch.manual_seed(0)
    model = copy.deepcopy(digits_resnet) if net == "resnet" else bn_from_data(InceptionStyle(), digits[0][:256])
    model = model.double()
    xtr, xte = digits[0][:300].double(), digits[2][:32].double()
    stats = calibrate(canonicalize(model), xtr, progress=False)
    kw = dict(stats=stats, channel_wise=channel_wise, percentile=99.9, progress=False)
    thr = zoo.convert(model, xtr, "rueckauer2017", form="threshold", **kw).double()
    wgt = zoo.convert(model, xtr, "rueckauer2017", form="weight", **kw).double()
    # weight form: unit thresholds, binary spikes, shortcut/branch edges carry their own Scale
    assert all(float(n.threshold.max()) == 1.0 and n.threshold.numel() == 1 for n in wgt.neurons().values())
    assert any(isinstance(m, Scale) for m in wgt.modules())
    with thr.recording() as a, wgt.recording() as b:
        thr.run(xte, 64, chunk=16)
        wgt.run(xte, 64, chunk=16)
        total = 0
        for name in a:
            sa, sb = torch.cat(a[name].recorded), torch.cat(b[name].recorded)
            assert torch.equal(sa, sb), f"spikes differ in {name}: {(sa != sb).sum()} of {sa.numel()}"
            total += int(sa.sum())
    assert total > 0


def test_weight_form_folds_a_spiking_readout(digits, digits_resnet):
    """Spike-count readout (Diehl): the weight form moves the readout threshold into the last layer too, so every
    threshold is 1 and the class spike counts equal the threshold form's."""
    model = copy.deepcopy(digits_resnet).double()
    xtr, xte = digits[0][:300].double(), digits[2][:32].double()
    stats = calibrate(canonicalize(model), xtr, progress=False)
    kw = dict(stats=stats, encoder="analog", progress=False)
    thr = zoo.convert(model, xtr, "diehl2015-data", form="threshold", **kw).double()
    wgt = zoo.convert(model, xtr, "diehl2015-data", form="weight", **kw).double()
    assert float(thr.readout.neuron.threshold) > 1.5  # the ANN's largest logit on calibration data
    assert float(wgt.readout.neuron.threshold) == 1.0
    assert all(float(n.threshold.max()) == 1.0 for n in wgt.neurons().values())
    a, b = thr.run(xte, 64, chunk=16), wgt.run(xte, 64, chunk=16)
    assert a.sum() > 0 and torch.equal(a, b)


class _Residual(nn.Module):
    """A stem, then ``blocks`` residual blocks ``relu(x + conv(relu(conv(x))))``: 1 + 2*blocks layers deep."""

    def __init__(self, blocks: int = 12) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(2 * blocks))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for a, b in zip(self.convs[::2], self.convs[1::2]):
            x = torch.relu(x + b(torch.relu(a(x))))
        return x.mean((2, 3))


def test_depth_compensation_gain_grows_linearly_not_compounded():
    """Hu's compensation (``depth_compensation=c``): the SNN's rate model scales a neuron's output at depth d by
    1 + c*d over the ANN's activation. (A factor of 1 + c*d in every layer would compound to prod_k (1 + c*k):
    about 270x at the 25th layer of this net at c=0.02, and 1200x at ResNet-56's 55th at c=0.005.)"""
    torch.manual_seed(0)
    model = _Residual().double().eval()
    with torch.no_grad():
        for conv in [model.stem, *model.convs]:
            conv.weight.mul_(0.3)
            conv.bias.zero_()  # without biases every layer is positively homogeneous: its gain is its input's
    x = torch.rand(64, 1, 8, 8, dtype=torch.float64)
    c = 0.02
    outs = {}
    for k in (0.0, c):
        snn = zoo.convert(model, x, "rueckauer2017", form="threshold", percentile=100.0, depth_compensation=k,
                          progress=False).double()
        acts = []
        hooks = [n.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for n in snn.neurons().values()]
        with rate_model(snn), torch.no_grad():
            snn.body(x * 0.5)  # half the calibration range: no output reaches the lowered thresholds' clip
        for h in hooks:
            h.remove()
        outs[k] = acts
    depths = [1] + [d for b in range(12) for d in (2 + 2 * b, 3 + 2 * b)]  # stem; per block: inner, after add
    assert len(outs[c]) == len(depths) == 25
    for d, base, comp in zip(depths, outs[0.0], outs[c]):
        gain = float(comp.sum() / base.sum())
        # 1 + c*d along the longest path; shortcuts pass fewer neurons (the shortest path: the stem and the
        # neurons after the adds), so the mix that reaches a neuron has gained less, but the gain still grows
        assert 1 + c * d / 3 - 1e-6 <= gain <= 1 + c * d + 1e-6, (d, gain)  # 1e-6: float32 thresholds


# ---------------------------------------------------------------------------------------- errors
class WithSiLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.block = nn.Sequential(nn.SiLU())
        self.fc = nn.Linear(4 * 36, 10)

    def forward(self, x):
        return self.fc(self.block(self.conv(x)).flatten(1))


class WithGELU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x.flatten(1))))


class WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.norm(self.fc1(x.flatten(1)))))


class WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.fc = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(64, 10)

    def forward(self, x):
        t = x.flatten(2)  # [B, 1, 64] -> tokens
        t = t.reshape(t.shape[0], 8, 8)
        a = torch.softmax(self.q(t) @ self.k(t).transpose(1, 2), -1) @ t
        return self.fc(a.flatten(1))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if x.sum() > 0:
            x = x * 2
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("model_cls,node,path", [
    (WithSiLU, "block_0", "block.0"), (WithGELU, "gelu", "<top level>"), (WithLayerNorm, "norm", "norm"),
    (WithAttention, "transpose", "<top level>"),
])
def test_unsupported_ops_raise_with_node_and_path(model_cls, node, path, digits):
    model = model_cls().eval()
    before = copy.deepcopy(model.state_dict())
    modules_before = [(n, type(m)) for n, m in model.named_modules()]
    with pytest.raises(ConversionError) as err:
        zoo.convert(model, digits[0][:16], progress=False)
    msg = str(err.value)
    assert node in msg and repr(path) in msg and "Supported:" in msg and "ReLU" in msg
    # nothing half-converted: the user's model is untouched, weights and modules alike
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [(n, type(m)) for n, m in model.named_modules()] == modules_before


def test_untraceable_model_raises_conversion_error(digits):
    with pytest.raises(ConversionError, match="torch.fx could not trace Untraceable"):
        zoo.convert(Untraceable(), digits[0][:16], progress=False)


def test_missing_calibration_data_is_explained(digits_cnn):
    with pytest.raises(ValueError, match="calibration_data"):
        zoo.convert(digits_cnn, None, "rueckauer2017", input_shape=(1, 8, 8), progress=False)
    with pytest.raises(ValueError, match="empty"):
        zoo.convert(digits_cnn, torch.utils.data.DataLoader(torch.zeros(0, 1, 8, 8)), progress=False)
