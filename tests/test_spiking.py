"""Neurons and spiking layers: dynamics, state across chunks, encoders, readouts, pooling."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.spiking import (
    IFNode, LIFNode, MembraneReadout, PoissonEncoder, RateGatedMaxPool2d, Scale, SoftmaxReadout, SpikeCountReadout,
)


def run(node, x_seq):
    """Feed [T, B, ...] through a multi-step module; return [T, B, ...]."""
    T, B = x_seq.shape[:2]
    node.steps, node.batch = T, B
    out = node(x_seq.flatten(0, 1))
    return out.reshape((T, B) + tuple(out.shape[1:]))


def test_if_subtract_rate_converges_to_clipped_input():
    I = torch.tensor([[-0.5, 0.0, 0.13, 0.5, 0.77, 1.0, 2.0]])
    node = IFNode(1.0, amplitude=1.0, reset="subtract")
    out = run(node, I.expand(1000, *I.shape))
    rate = out.mean(0)
    assert torch.allclose(rate, I.clamp(0, 1), atol=2e-3)


def test_if_reset_zero_loses_residual_charge():
    node = IFNode(1.0, amplitude=1.0, reset="zero")
    out = run(node, torch.full((100, 1, 1), 0.6))
    # reset to zero: spike every 2nd step (0.6, 1.2 -> spike -> 0) -> rate 0.5 < 0.6
    assert out.mean().item() == pytest.approx(0.5)


def test_threshold_form_amplitude_and_per_channel_threshold():
    th = torch.tensor([0.5, 2.0])
    node = IFNode(th, reset="subtract")  # amplitude defaults to the threshold
    x = torch.tensor([0.25, 1.0]).reshape(1, 2, 1, 1).expand(400, 1, 2, 1, 1).clone()
    out = run(node, x)
    assert set(out[:, 0, 0].unique().tolist()) <= {0.0, 0.5}
    assert set(out[:, 0, 1].unique().tolist()) <= {0.0, 2.0}
    assert torch.allclose(out.mean(0).flatten(), torch.tensor([0.25, 1.0]), atol=1e-2)


def test_state_carried_across_chunks_equals_one_long_run():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 5)
    a = IFNode(0.7, reset="subtract", v_init=0.5)
    b = IFNode(0.7, reset="subtract", v_init=0.5)
    full = run(a, x)
    parts = torch.cat([run(b, x[i:i + 8]) for i in range(0, 64, 8)])
    assert torch.equal(full, parts)
    b.reset_state()
    assert b.v is None


def test_constant_input_broadcast_matches_repeated_input():
    x = torch.rand(4, 6)
    a, b = IFNode(0.5), IFNode(0.5)
    a.steps, a.batch = 10, 4
    const = a(x)  # [B, ...] constant over the chunk
    seq = run(b, x.expand(10, 4, 6)).flatten(0, 1)
    assert torch.equal(const, seq)


def test_half_threshold_init_reduces_latency():
    x = torch.full((3, 1, 1), 0.5)
    zero, half = IFNode(1.0, amplitude=1.0), IFNode(1.0, amplitude=1.0, v_init=0.5)
    assert run(zero, x).flatten().tolist() == [0, 1, 0]
    assert run(half, x).flatten().tolist() == [1, 0, 1]


def test_lif_leak_and_refractory_period():
    # no leak: rate 1 for strong input; refractory 2 steps caps the rate at 1/3
    lif = LIFNode(1.0, amplitude=1.0, tau_rc=1e9, tau_ref=0.002, dt=0.001, reset="zero")
    out = run(lif, torch.full((300, 1, 1), 5.0))
    assert out.mean().item() == pytest.approx(1 / 3, abs=0.01)
    # leak: a current of 0.04 per step never reaches threshold with decay exp(-1/20) (fixed point 0.8)
    leaky = LIFNode(1.0, amplitude=1.0, tau_rc=0.02, dt=0.001)
    assert run(leaky, torch.full((500, 1, 1), 0.04)).sum().item() == 0
    ifn = IFNode(1.0, amplitude=1.0)
    assert run(ifn, torch.full((500, 1, 1), 0.04)).sum().item() == 20


def test_lif_matches_soft_lif_rate_formula():
    # gain = 1 - decay integrates a constant current J exactly: rate ~ 1 / (tau_ref + tau_rc * ln(1 + 1/(J-1)))
    tau_rc, tau_ref, dt = 0.02, 0.0, 0.0001
    J = torch.tensor([1.5, 2.0, 4.0]).reshape(1, 3)
    lif = LIFNode(1.0, amplitude=1.0, tau_rc=tau_rc, tau_ref=tau_ref, dt=dt, gain=1 - math.exp(-dt / tau_rc),
                  reset="zero")
    steps = 20000
    rate = run(lif, J.expand(steps, 1, 3)).sum(0).flatten() / (steps * dt)
    expected = 1 / (tau_ref + tau_rc * torch.log1p(1 / (J.flatten() - 1)))
    assert torch.allclose(rate, expected, rtol=0.03)


def test_synaptic_filter_keeps_the_mean_and_smooths():
    a = IFNode(1.0, amplitude=1.0)
    f = IFNode(1.0, amplitude=1.0, synapse_decay=math.exp(-1 / 5))
    x = torch.full((2000, 1, 1), 0.3)
    raw, filt = run(a, x), run(f, x)
    assert filt.mean().item() == pytest.approx(raw.mean().item(), abs=0.01)
    assert filt[1000:].std() < raw[1000:].std()


def test_poisson_encoder_rate_sign_and_seed():
    x = torch.tensor([[-0.8, 0.0, 0.3, 0.9]])
    enc = PoissonEncoder(rate=1.0, seed=7)
    enc.steps, enc.batch = 4000, 1
    s = enc(x).reshape(4000, 1, 4)
    assert torch.allclose(s.mean(0), x, atol=0.03)
    assert (s[:, 0, 0] <= 0).all() and (s[:, 0, 1] == 0).all()
    enc2 = PoissonEncoder(rate=1.0, seed=7)
    enc2.steps, enc2.batch = 4000, 1
    assert torch.equal(enc2(x).reshape(4000, 1, 4), s)
    with pytest.raises(ValueError, match="rate"):
        PoissonEncoder(rate=0)


def _poisson_trains(enc, x, chunks):
    enc.reset_state()
    out = []
    for k in chunks:
        enc.steps, enc.batch = k, x.shape[0]
        out.append(enc(x).reshape((k,) + tuple(x.shape)))
    return torch.cat(out)


def test_poisson_train_depends_on_the_image_and_seed_only():
    """Counter-based draws: an image's spike train is the same alone, in another batch at another position,
    or with the steps cut into other chunks; another seed or another image gives another train."""
    torch.manual_seed(0)
    x = torch.rand(6, 3, 5, 5)
    whole = _poisson_trains(PoissonEncoder(0.8, seed=3), x, [40])
    assert torch.equal(_poisson_trains(PoissonEncoder(0.8, seed=3), x, [7, 1, 32]), whole)
    alone = _poisson_trains(PoissonEncoder(0.8, seed=3), x[4:5], [40])
    assert torch.equal(alone[:, 0], whole[:, 4])
    shuffled = _poisson_trains(PoissonEncoder(0.8, seed=3), torch.cat([x[2:3], torch.rand(2, 3, 5, 5), x[4:5]]), [40])
    assert torch.equal(shuffled[:, 3], whole[:, 4]) and torch.equal(shuffled[:, 0], whole[:, 2])
    assert not torch.equal(_poisson_trains(PoissonEncoder(0.8, seed=4), x, [40]), whole)
    assert not torch.equal(whole[:, 0], whole[:, 1])
    # a float64 copy of the image is the same image once cast to the float32 the draws read
    assert torch.equal(_poisson_trains(PoissonEncoder(0.8, seed=3), x[:2].double(), [40]).float(), whole[:, :2])


def test_poisson_draws_are_uniform_and_uncorrelated():
    enc = PoissonEncoder(1.0, seed=0)
    u = enc.uniforms(torch.rand(8, 64), 500)  # 256,000 draws
    assert enc.elapsed == 500 and u.shape == (500, 8, 64)
    assert ((u >= 0) & (u < 1)).all()
    hist = torch.histc(u, bins=20, min=0, max=1)
    expected = u.numel() / 20
    chi2 = ((hist - expected) ** 2 / expected).sum().item()
    assert chi2 < 43.8  # chi-square, 19 degrees of freedom, p = 0.001
    flat = u.reshape(500, -1)
    for a, b in [(flat[1:], flat[:-1]), (flat[:, 1:], flat[:, :-1]), (u[:, 1:].flatten(1), u[:, :-1].flatten(1))]:
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) < 0.01, r  # next step, next pixel, next image; 4 sigma is 0.008


def test_rate_gated_maxpool_passes_the_max_rate():
    torch.manual_seed(0)
    rates = torch.tensor([0.1, 0.5, 0.3, 0.2]).reshape(1, 1, 2, 2)
    spikes = (torch.rand(500, 1, 1, 2, 2) < rates).float()
    pool = RateGatedMaxPool2d(2)
    out = run(pool, spikes)
    counts = spikes.sum(0).flatten()
    assert out.sum().item() == counts.max().item()  # output count = largest input count
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def _maxpool_step_loop(spikes: torch.Tensor, k: int) -> torch.Tensor:
    """Rueckauer's gated max-pool for a whole run in one call: the reference for chunked runs."""
    pool = lambda t: torch.nn.functional.max_pool2d(t, k)  # noqa: E731
    counts = torch.zeros_like(spikes[0])
    leader, outs = pool(counts), []
    for t in range(spikes.shape[0]):
        counts = counts + (spikes[t] != 0).float()
        outs.append((pool(counts) - leader) * pool(spikes[t]))
        leader = pool(counts)
    return torch.stack(outs)


def test_rate_gated_maxpool_equals_the_step_loop_across_chunks():
    torch.manual_seed(1)
    amp = torch.tensor([0.5, 2.0, 1.25]).reshape(1, 1, 3, 1, 1)  # per-channel spike values
    spikes = (torch.rand(40, 2, 3, 4, 6) < torch.rand(1, 2, 3, 4, 6)).float() * amp
    expected = _maxpool_step_loop(spikes, 2)
    pool = RateGatedMaxPool2d(2)
    pool.batch, outs, done = 2, [], 0
    for n in (1, 7, 16, 16):  # state carried over chunks of different lengths
        pool.steps = n
        outs.append(pool(spikes[done:done + n].flatten(0, 1)).reshape(n, 2, 3, 2, 3))
        done += n
    assert torch.equal(torch.cat(outs), expected)


def feed(readout, z_seq):
    readout.steps, readout.batch = z_seq.shape[0], z_seq.shape[1]
    return readout(z_seq.flatten(0, 1))  # readouts return [T, B, K]


def test_readouts():
    z = torch.tensor([[0.1, 0.9, 0.3]])
    mem = MembraneReadout()
    scores = feed(mem, z.expand(10, 1, 3))
    assert torch.allclose(scores[-1], 10 * z)
    assert torch.allclose(mem.estimate(), z)
    cnt = SpikeCountReadout(threshold=1.0, reset="subtract")
    s = feed(cnt, z.expand(100, 1, 3))
    assert s[-1].argmax().item() == 1 and s[-1, 0, 1].item() == pytest.approx(90, abs=1)
    sm = SoftmaxReadout(seed=0)
    s = feed(sm, (5 * z).expand(300, 1, 3))
    assert s[-1].sum().item() == 300 and s[-1].argmax().item() == 1


def test_scale_per_channel():
    s = Scale(torch.tensor([2.0, 3.0]))
    assert torch.equal(s(torch.ones(1, 2, 1, 1)).flatten(), torch.tensor([2.0, 3.0]))
    assert torch.equal(Scale(0.5)(torch.ones(3)), torch.full((3,), 0.5))


def test_invalid_reset_rejected():
    with pytest.raises(ValueError, match="subtract"):
        IFNode(1.0, reset="foo")


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("const", [True, False])
def test_if_step_is_what_forward_computes_at_each_step(reset, const):
    """IFNode.step (explicit state, used by the ONNX export) gives forward's spikes and membranes, with
    per-channel thresholds, a calibrated v_offset and a bias current."""
    from zoo.spiking.neuron import IFNode

    g = torch.Generator().manual_seed(0)
    C, B, T = 4, 3, 12
    node = IFNode(torch.rand(C, generator=g) + 0.5, reset=reset, v_init=0.5,
                  v_offset=torch.randn(C, generator=g) * 0.1, current=torch.randn(C, generator=g) * 0.1)
    x = torch.rand(B, C, 5, 5, generator=g) if const else torch.rand(T * B, C, 5, 5, generator=g)
    node.steps, node.batch = T, B
    ref = node(x.clone()).reshape(T, B, C, 5, 5)
    v = node.initial_v(torch.zeros(B, C, 5, 5))
    for t in range(T):
        out, v = node.step(x if const else x[t * B:(t + 1) * B], v)
        torch.testing.assert_close(out, ref[t], rtol=0, atol=1e-6)
    torch.testing.assert_close(v, node.v, rtol=0, atol=1e-5)
