"""The zoo's architectures: timm registration, shapes, kwargs, torch.fx tracing, SoftLIF."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn
import torch.nn.functional as F

import zoo.models
from zoo.models import ARCHS, SoftLIF, model_info

ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, SoftLIF)
EXPECTED = {"vgg16_cifar", "cao_cifar", "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "inception_cifar",
            "diehl_fcn", "diehl_convnet", "vgg_mini", "resnet_mini", "plif_convnet"}
# spiking by default (act="plif", tests/test_direct.py): checked here as the same net with ReLUs
ANN_KW = {"plif_convnet": {"act": "relu"}}
# the big nets are checked at a reduced width in the kwarg-variant tests, to keep the suite fast
SMALL = {"vgg16_cifar": 0.25, "inception_cifar": 0.5, "diehl_fcn": 0.25}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _input(name: str, batch: int = 2, **kw) -> torch.Tensor:
    c, h, w = model_info(name)["input_size"]
    torch.manual_seed(0)
    return torch.randn(batch, kw.get("in_chans", c), h, w)


def _check_structure(model: nn.Module) -> None:
    """Activations are known module types, not in place, each module instance used once in the graph."""
    for m in model.modules():
        assert not getattr(m, "inplace", False), f"in-place module {m}"
        if isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6):
            assert m.min_val == 0.0 and m.max_val > 0
    gm = torch.fx.symbolic_trace(model)
    seen: set[str] = set()
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods[node.target], ACT_MODULES):
            assert node.target not in seen, f"activation {node.target} used twice"
            seen.add(node.target)
    n_act = sum(isinstance(m, ACT_MODULES) for m in model.modules())
    if not any(isinstance(m, SoftLIF) for m in model.modules()):  # SoftLIF is traced through, not a call_module
        assert len(seen) == n_act


def test_all_registered():
    assert set(ARCHS) == EXPECTED
    assert timm.list_models("resnet20_cifar") == ["resnet20_cifar"]
    assert EXPECTED <= set(timm.list_models())
    for name in ARCHS:
        assert timm.is_model(name)
        cfg = timm.get_pretrained_cfg(name)
        assert cfg is not None and cfg.num_classes == 10 and not cfg.has_weights


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_forward_trace(name):
    model = timm.create_model(name, **ANN_KW.get(name, {})).eval()
    info = model_info(name)
    assert info["family"] in {"vgg", "resnet", "inception", "fcn", "convnet"}
    assert model.pretrained_cfg["input_size"] == tuple(info["input_size"])
    assert model.default_cfg is model.pretrained_cfg
    x = _input(name)
    with torch.no_grad():
        y = model(x)
        gm = torch.fx.symbolic_trace(model)
        assert torch.allclose(gm(x), y, atol=1e-5)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    _check_structure(model)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("kwargs", [
    dict(act="relu6"),
    dict(act="clip", clip_value=1.5),
    dict(act="softlif"),
    dict(act="softlif", act_kwargs=dict(tau_rc=0.05, noise_std=0.1)),
    dict(pool="max"),
    dict(pool="avg"),
    dict(bias=False),
    dict(bias=True, bn=False),
    dict(num_classes=7, in_chans=2),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_kwarg_variants(name, kwargs):
    kw = {**ANN_KW.get(name, {}), **kwargs}
    kw.setdefault("width", SMALL.get(name, 1.0))
    model = timm.create_model(name, **kw)
    x = _input(name, **kw)
    model.train()
    y = model(x)
    assert y.shape == (2, kw.get("num_classes", 10))
    y.float().sum().backward()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x), atol=1e-5)
    _check_structure(model)
    acts = [m for m in model.modules() if isinstance(m, ACT_MODULES)]
    want = {"relu6": nn.ReLU6, "clip": nn.Hardtanh, "softlif": SoftLIF}.get(kw.get("act"), nn.ReLU)
    assert acts and all(type(m) is want for m in acts)
    if kw.get("act") == "clip":
        assert all(m.max_val == 1.5 for m in acts)
    if "act_kwargs" in kw:
        assert all(m.tau_rc == 0.05 and m.noise_std == 0.1 for m in acts)
    if kw.get("bias") is False:
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
        assert all(m.bias is None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    if kw.get("bn") is False:
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    if kw.get("pool") == "max":
        assert all(isinstance(m, nn.MaxPool2d) for m in pools)
    if kw.get("pool") == "avg":
        assert all(isinstance(m, nn.AvgPool2d) for m in pools)
    if kw.get("pool") and name.startswith(("vgg", "resnet", "inception", "diehl_conv")):
        assert pools, f"pool={kw['pool']} should add/select pooling layers in {name}"


def test_width_scales_channels():
    small = timm.create_model("resnet20_cifar", width=0.5)
    big = timm.create_model("resnet20_cifar", width=2.0)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(small) < n(timm.create_model("resnet20_cifar")) < n(big)
    assert small.fc.in_features == 32 and big.fc.in_features == 128


def test_parameter_counts():
    n = lambda name, **kw: sum(p.numel() for p in timm.create_model(name, **kw).parameters())  # noqa: E731
    assert 0.26e6 < n("resnet20_cifar") < 0.28e6  # He et al.: 0.27 M
    assert 0.84e6 < n("resnet56_cifar") < 0.87e6  # 0.85 M
    assert 1e6 < n("inception_cifar") < 3e6
    assert 14e6 < n("vgg16_cifar") < 16e6
    assert n("vgg_mini") < 2e5 and n("resnet_mini") < 1e5


def test_architecture_details():
    vgg = timm.create_model("vgg16_cifar")
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(m.kernel_size == (3, 3) for m in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.modules()) == 5
    assert any(isinstance(m, nn.Dropout) for m in vgg.modules())

    for depth in (20, 32, 44, 56):
        net = timm.create_model(f"resnet{depth}_cifar")
        blocks = [m for m in net.modules() if type(m).__name__ == "BasicBlock"]
        assert len(blocks) == (depth - 2) // 6 * 3
        projections = [b for b in blocks if len(b.shortcut)]
        assert len(projections) == 2  # option B: only where the shape changes
        assert all(isinstance(b.shortcut[0], nn.Conv2d) and b.shortcut[0].kernel_size == (1, 1)
                   and isinstance(b.shortcut[1], nn.BatchNorm2d) for b in projections)
    with_pool = timm.create_model("resnet20_cifar", pool="avg")
    assert sum(isinstance(m, nn.AvgPool2d) for m in with_pool.modules()) == 2

    fcn = timm.create_model("diehl_fcn")
    lin = [m for m in fcn.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(784, 1200), (1200, 1200), (1200, 10)]
    assert all(m.bias is None for m in lin)
    conv = timm.create_model("diehl_convnet")
    assert [m.out_channels for m in conv.modules() if isinstance(m, nn.Conv2d)] == [12, 64]
    assert all(m.bias is None for m in conv.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert sum(isinstance(m, nn.AvgPool2d) for m in conv.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in conv.modules())

    inc = timm.create_model("inception_cifar")
    kernels = {m.kernel_size for m in inc.modules() if isinstance(m, nn.Conv2d)}
    assert {(1, 7), (7, 1), (1, 3), (3, 1), (5, 5), (1, 1), (3, 3)} <= kernels
    gm = torch.fx.symbolic_trace(inc)
    assert sum(n.target is torch.cat for n in gm.graph.nodes) >= 7


def test_residual_add_then_activation():
    gm = torch.fx.symbolic_trace(timm.create_model("resnet_mini"))
    mods = dict(gm.named_modules())
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ in ("add", "iadd")]
    assert len(adds) == 3
    for n in adds:
        (user,) = n.users
        assert user.op == "call_module" and isinstance(mods[user.target], nn.ReLU)


def test_img_size_for_flattening_nets():
    m = timm.create_model("diehl_fcn", img_size=8, in_chans=1)
    assert m(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    m = timm.create_model("vgg_mini", img_size=[28, 28])
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # nets with global pooling take other sizes as they are
    assert timm.create_model("resnet20_cifar", in_chans=1)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_bad_kwargs():
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("resnet20_cifar", pretrained=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        timm.create_model("resnet20_cifar", depth=3)
    with pytest.raises(ValueError, match="clip_value"):
        timm.create_model("vgg_mini", act="clip")
    with pytest.raises(ValueError, match="BatchNorm"):
        timm.create_model("vgg_mini", bias=False, bn=True)
    with pytest.raises(ValueError, match="act="):
        timm.create_model("vgg_mini", act="gelu")
    with pytest.raises(ValueError, match="pool="):
        timm.create_model("vgg_mini", pool="lp")


def test_model_info():
    info = model_info("diehl_convnet")
    assert info["family"] == "convnet" and info["input_size"] == (1, 28, 28) and info["dataset"] == "mnist"
    assert info["defaults"]["bias"] is False
    assert model_info("vgg_mini")["input_size"] == (1, 8, 8)
    assert model_info("inception_cifar")["family"] == "inception"
    assert model_info("diehl_fcn")["family"] == "fcn"
    with pytest.raises(KeyError):
        model_info("resnet18")
    assert zoo.models.ARCHS is not None and "resnet20_cifar" in zoo.models.ARCHS


# ------------------------------------------------------------------------------------------------ SoftLIF
def test_softlif_attributes():
    s = SoftLIF()
    assert (s.tau_rc, s.tau_ref, s.gamma, s.amplitude, s.noise_std) == (0.02, 0.002, 0.03, 0.063, 0.0)
    assert all(isinstance(v, float) for v in (s.tau_rc, s.tau_ref, s.gamma, s.amplitude, s.noise_std))
    with pytest.raises(ValueError):
        SoftLIF(gamma=0.0)


def test_softlif_values_and_gradients():
    s = SoftLIF()
    j = torch.tensor([-100.0, -1.0, 0.0, 0.3, 0.9, 1.0, 1.1, 2.0, 5.0, 1e4], requires_grad=True)
    out = s(j)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(j.grad).all()
    assert (out >= 0).all()
    assert out[0] == 0 and out[1] == 0 and out[2] == 0 and out[3] == 0  # p below 1e-10: rate exactly 0
    assert (out[4:].diff() > 0).all()  # increasing above
    # far above threshold the soft-LIF is the LIF rate curve
    for v in (2.0, 5.0):
        lif = 1.0 / (s.tau_ref + s.tau_rc * math.log1p(1.0 / (v - 1.0)))
        assert float(s(torch.tensor(v))) == pytest.approx(s.amplitude * lif, rel=1e-3)
    assert float(s(torch.tensor(1e4))) == pytest.approx(s.amplitude / s.tau_ref, rel=1e-2)  # saturates at 1/tau_ref
    # the softplus smoothing: at threshold p = gamma * log 2
    p = s.gamma * math.log(2.0)
    assert float(s(torch.tensor(1.0))) == pytest.approx(s.amplitude / (s.tau_ref + s.tau_rc * math.log1p(1 / p)), rel=1e-5)
    # gamma -> 0 approaches LIF
    sharp = SoftLIF(gamma=1e-3)
    assert float(sharp(torch.tensor(1.5))) == pytest.approx(
        sharp.amplitude / (sharp.tau_ref + sharp.tau_rc * math.log1p(2.0)), rel=1e-3)


def test_softlif_noise_only_in_training():
    s = SoftLIF(noise_std=0.5)
    x = torch.full((10000,), 2.0)
    s.eval()
    assert torch.equal(s(x), s(x))
    s.train()
    noisy = s(x)
    assert (noisy >= 0).all()
    assert noisy.std() > 0.3
    assert torch.equal(SoftLIF().train()(x), SoftLIF().eval()(x))  # no noise by default


def test_softlif_half_precision():
    x = torch.linspace(-2, 4, 50)
    ref = SoftLIF()(x)
    out = SoftLIF()(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, rtol=2e-2, atol=1e-2)


def test_softlif_training_path_matches_the_composite():
    """The soft-LIF runs through its written-out derivative (:class:`_SoftLIFOutput`, in-place arithmetic); values
    and gradients are those of autograd through the formula written as plain tensor ops, in training and in
    evaluation, and the module still traces with torch.fx."""
    s = SoftLIF(gamma=0.05, amplitude=0.1)
    j = torch.linspace(-3.0, 6.0, 2001, dtype=torch.float64)

    def composite(x):  # Hunsberger's soft-LIF, as written in the SoftLIF docstring
        p = s.gamma * F.softplus((x.float() - 1.0) / s.gamma)
        rate = 1.0 / (s.tau_ref + s.tau_rc * torch.log(1.0 + 1.0 / p.clamp(min=1e-10)))
        return s.amplitude * torch.where(p < 1e-10, 0.0, rate)

    for mode in (s.train, s.eval):
        mode()
        fast, ref = j.clone().requires_grad_(True), j.clone().requires_grad_(True)
        out_fast, out_ref = s(fast), composite(ref)
        (out_fast * (1 + j**2)).sum().backward()
        (out_ref * (1 + j**2)).sum().backward()
        assert torch.allclose(out_fast, out_ref.to(out_fast.dtype), rtol=1e-6, atol=0)
        assert torch.allclose(fast.grad, ref.grad, rtol=1e-4, atol=1e-7)
        assert torch.allclose(s.rate(j.detach()) * s.amplitude, out_fast.detach().to(torch.float32), rtol=1e-6)
    assert (fast.grad[j < -0.1] == 0).all() and (fast.grad[j > 0.1] > 0).all()  # rate exactly 0 far below 1
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    s(x).float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()
    gm = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(8, 8), SoftLIF()).train())
    assert any(n.op == "call_function" and n.target.__name__ == "softlif_output" for n in gm.graph.nodes)
