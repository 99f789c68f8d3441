"""NIR export and import (zoo.interchange.nir) and the second simulator (snnTorch, zoo.interchange.nir_snntorch).

* a round trip (export to a .nir file, import, simulate) gives the same spikes as the original, layer by layer,
  and the same tensors and config, for every kind of published network NIR can express;
* what NIR cannot express is refused by name and nothing is written;
* snnTorch, running the exported MNIST ConvNet, scores what zoo.simulate scores on the same 1,000 test images
  at T=32, and refuses the recipes its neurons cannot run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import zoo  # noqa: E402
from zoo.interchange import export_snn  # noqa: E402
from zoo.interchange.nir import NIRExportError, NIRImportError, from_nir, node_meta, to_nir  # noqa: E402
from zoo.serialization import load_snn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# one checkpoint of each kind the zoo publishes and NIR can express
ROUND_TRIP = [
    "models/demo/resnet-mini-digits/hu2018.safetensors",          # residual adds, edge scales (nir.Scale)
    "models/demo/vgg-mini-digits/rueckauer2017.safetensors",      # reset by subtraction, amplitudes θ
    "models/demo/resnet-mini-digits/cao2015.safetensors",         # Poisson input, spike-count readout
    "models/demo/vgg-mini-digits/hunsberger2016.safetensors",     # LIF, refractory period, synaptic filter
    "models/zoo/diehl-convnet-mnist/hu2018.safetensors",
    "models/zoo/diehl-fcn-mnist/low-latency.safetensors",         # per-neuron thresholds, v_init = 0.5
    "models/zoo/sresnet20-cifar10/low-latency.safetensors",       # per-channel thresholds, AdaptiveAvgPool2d
    "models/zoo-qcfs/sresnet20-qcfs-cifar10/li2021.safetensors",  # calibrated initial membranes (v_offset)
]


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_round_trip_through_a_nir_file_gives_the_same_spikes_layer_by_layer(path, tmp_path):
    torch.set_num_threads(1)
    snn = load_snn(ROOT / path)
    out = export_snn(snn, tmp_path / "snn.nir")
    back = from_nir(out)
    assert back.config == snn.config
    a, b = snn.state_dict(), back.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    x = torch.rand(6, *snn.config["input_shape"]) * 2 - 0.5
    T = 40  # LIF layers need a few tens of steps before their first spikes
    with snn.recording() as mine, back.recording() as theirs:
        ref, got = snn.run(x, T, chunk=16), back.run(x, T, chunk=16)
    assert list(mine) == list(theirs) and len(mine) >= 2
    for name in mine:
        s1, s2 = torch.cat(mine[name].recorded), torch.cat(theirs[name].recorded)
        assert s1.sum() > 0, f"{name} never fired: the comparison would be empty"
        assert torch.equal(s1, s2), f"layer {name}: {int((s1 != s2).sum())} spikes differ"
    assert torch.equal(ref, got)


def test_the_nir_graph_says_what_nir_primitives_cannot():
    """Subtractive reset, initial membranes and the readout are in the metadata; NIR's own fields hold the rest."""
    snn = load_snn(ROOT / "models/zoo/sresnet20-cifar10/low-latency.safetensors")
    g = to_nir(snn)
    ifs = {k: n for k, n in g.nodes.items() if isinstance(n, nir.IF)}
    assert len(ifs) == len(snn.neurons())
    name, node = next(iter(ifs.items()))
    m = node_meta(node)
    assert m["reset"] == "subtract" and m["v_init"] == 0.5 and m["threshold_numel"] > 1
    theta = snn.body.get_submodule(name).threshold
    np.testing.assert_array_equal(node.v_threshold[:, 0, 0], theta.numpy())
    assert node_meta(g)["readout"] == {"kind": "membrane"} and node_meta(g)["encoder"] == {"kind": "analog"}
    # a residual add is two edges into the block's neuron
    assert any(len([e for e in g.edges if e[1] == k]) == 2 for k in ifs)


def _signed(snn):
    for n in snn.neurons().values():
        n.signed = True
    return snn


def _if_with_filter(snn):
    next(iter(snn.neurons().values())).synapse_decay = 0.8
    return snn


@pytest.mark.parametrize("make,message", [
    (lambda: load_snn(ROOT / "models/zoo-qcfs/sresnet20-qcfs-cifar10/wang2022.safetensors"), "signed neurons"),
    (lambda: load_snn(ROOT / "models/zoo/vgg16-cifar10/low-latency.safetensors"), "NIR has no max-pooling"),
    (lambda: _if_with_filter(load_snn(ROOT / "models/demo/vgg-mini-digits/rueckauer2017.safetensors")),
     "synaptic filter"),
])
def test_what_nir_cannot_express_is_refused_and_nothing_is_written(make, message, tmp_path):
    with pytest.raises(NIRExportError, match=message):
        export_snn(make(), tmp_path / "x.nir")
    assert not list(tmp_path.iterdir())


def test_a_graph_from_another_tool_imports_with_nir_semantics():
    """A hand-written NIR graph (no snn-zoo metadata): IF neurons reset to v_reset = 0, the output is read as a
    membrane; the simulation is what the NIR equations say, step by step."""
    w1 = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]], dtype=np.float32)
    w2 = np.array([[1.0, -1.0, 0.5]], dtype=np.float32)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                            "fc1": nir.Affine(weight=w1, bias=np.zeros(3, dtype=np.float32)),
                            "lif": nir.IF(r=np.ones(3, dtype=np.float32), v_threshold=np.full(3, 1.0, np.float32)),
                            "fc2": nir.Linear(weight=w2),
                            "output": nir.Output(output_type={"output": np.array([1])})},
                     edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")])
    snn = from_nir(g)
    x = torch.tensor([[0.3, 0.6]])
    i = x.numpy()[0] @ w1.T
    v, total = np.zeros(3), 0.0
    for _ in range(10):
        v = v + i
        s = (v >= 1.0).astype(np.float32)
        v = np.where(s > 0, 0.0, v)
        total += float((w2 @ s)[0])
    assert snn.run(x, 10).item() == pytest.approx(total)
    bad = nir.NIRGraph(nodes={**g.nodes, "lif": nir.IF(r=np.ones(3, np.float32), v_threshold=np.ones(3, np.float32),
                                                       v_reset=np.full(3, 0.2, np.float32))}, edges=g.edges)
    with pytest.raises(NIRImportError, match="v_reset != 0"):
        from_nir(bad)


def test_zoo_export_and_import_commands_round_trip_a_published_model(tmp_path, monkeypatch):
    """`zoo export NAME -o F.nir` and `zoo import F.nir -o F.safetensors`: the checkpoint that comes back holds
    the same tensors and runs to the same scores."""
    from typer.testing import CliRunner

    from zoo.cli import app

    monkeypatch.setenv("ZOO_INDEX", str(ROOT / "models/demo/index.json"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_REMOTE", raising=False)
    r = CliRunner().invoke(app, ["export", "resnet-mini-digits", "-o", str(tmp_path / "r.nir")])
    assert r.exit_code == 0 and "zoo.load_nir" in r.output, r.output
    r = CliRunner().invoke(app, ["import", str(tmp_path / "r.nir"), "-o", str(tmp_path / "r.safetensors")])
    assert r.exit_code == 0, r.output
    orig, back = zoo.load("resnet-mini-digits"), load_snn(tmp_path / "r.safetensors")
    x = torch.rand(4, *orig.config["input_shape"])
    assert torch.equal(orig.run(x, 16), back.run(x, 16))
    r = CliRunner().invoke(app, ["import", str(tmp_path / "missing.nir"), "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 2 and "no such file" in r.output and not (tmp_path / "m.safetensors").exists()


# --------------------------------------------------------------------------------- the second simulator
snntorch_sim = pytest.importorskip("zoo.interchange.nir_snntorch")


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "mnist").exists() and not (DATA / "MNIST").exists(),
                    reason="needs MNIST under ../shared/data")
def test_snntorch_reproduces_the_mnist_convnet_at_32_timesteps(monkeypatch):
    """The published ConvNet (its default variant), exported to NIR and run by snnTorch's neurons, scores what
    zoo.simulate scores on the same 1,000 seeded MNIST test images at T=32, within 0.5 pp."""
    torch.set_num_threads(1)
    monkeypatch.setenv("ZOO_DATA_DIR", str(DATA))
    snn = load_snn(ROOT / "models/zoo/diehl-convnet-mnist/hu2018.safetensors")
    data = zoo.test_data("diehl-convnet-mnist", DATA)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:1000].tolist()
    x = torch.stack([data[i][0] for i in idx])
    y = torch.tensor([int(data[i][1]) for i in idx])
    ours = float((snn.run(x, 32).argmax(1) == y).float().mean())
    net = snntorch_sim.snntorch_network(to_nir(snn))
    theirs = float((snntorch_sim.run_snntorch(net, x, 32).argmax(1) == y).float().mean())
    assert ours > 0.98 and abs(theirs - ours) <= 0.005, (ours, theirs)


def test_snntorch_runs_a_residual_network_and_differs_only_where_its_reset_differs(monkeypatch):
    """The demo ResNet (reset by subtraction, amplitudes θ, residual adds) in snnTorch, on the whole digits test
    split at T=32: within 2 % of zoo's accuracy. They are not spike for spike equal: snnTorch's Leaky subtracts θ
    ahead of the next step when its membrane is still above θ after a spike, so such a neuron next fires only
    from 2θ; the unit case below shows it."""
    snn = load_snn(ROOT / "models/demo/resnet-mini-digits/rueckauer2017.safetensors")
    net = snntorch_sim.snntorch_network(to_nir(snn))
    monkeypatch.setenv("ZOO_INDEX", str(ROOT / "models/demo/index.json"))
    test = zoo.test_data("resnet-mini-digits")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([int(test[i][1]) for i in range(len(test))])
    ours = float((snn.run(x, 32).argmax(1) == y).float().mean())
    theirs = float((snntorch_sim.run_snntorch(net, x, 32).argmax(1) == y).float().mean())
    assert ours > 0.9 and abs(ours - theirs) <= 0.02, (ours, theirs)


def test_snntorch_reset_by_subtraction_fires_later_after_an_overshoot():
    import snntorch as snn

    from zoo.spiking.neuron import IFNode

    # ours: v = 2.5, a spike, 1.5 left; 1.2 >= θ, a second spike, 0.2 left. snnTorch takes θ off the 1.5 ahead of
    # the second step, so it sees 0.2 < θ, puts the θ back (1.2) and stays there without firing again
    inputs = torch.tensor([2.5, -0.3, 0.0, 0.0]).reshape(4, 1)
    ours = IFNode(1.0, amplitude=1.0, reset="subtract")
    ours.steps, ours.batch = 4, 1
    theirs = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract", init_hidden=True, reset_delay=False)
    theirs.mem = torch.zeros(0)
    s_ours = ours(inputs.clone()).flatten().tolist()
    s_theirs = [float(theirs(i.reshape(1, 1))) for i in inputs]
    assert s_ours == [1.0, 1.0, 0.0, 0.0] and s_theirs == [1.0, 0.0, 0.0, 0.0], (s_ours, s_theirs)


@pytest.mark.parametrize("path,message", [
    ("models/zoo/diehl-fcn-mnist/low-latency.safetensors", "initial membranes"),
    ("models/demo/vgg-mini-digits/hunsberger2016.safetensors", "LIF neuron"),
    ("models/demo/vgg-mini-digits/cao2015.safetensors", "Poisson"),
])
def test_snntorch_refuses_what_its_neurons_cannot_run(path, message):
    with pytest.raises(NIRExportError, match=message):
        snntorch_sim.snntorch_network(to_nir(load_snn(ROOT / path)))
