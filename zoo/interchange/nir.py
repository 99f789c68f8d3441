"""NIR (Neuromorphic Intermediate Representation) export and import of converted SNNs.

NIR is how snnTorch, Norse, Sinabs, Rockpool, Lava-DL and neuromorphic chips exchange spiking networks.

* :func:`to_nir` maps a :class:`~zoo.spiking.SpikingNetwork` to a ``nir.NIRGraph``: convolutions
  (``nir.Conv2d``), fully connected layers (``nir.Affine``/``nir.Linear``), average pooling (``nir.AvgPool2d``),
  flattening, edge scales (``nir.Scale``), IF neurons (``nir.IF``) and LIF neurons (``nir.LIF``). A residual add
  is two edges into one node (NIR sums a node's inputs). Spike amplitudes other than 1 become a ``nir.Scale``
  after the neuron.
* What NIR's primitives cannot say is never dropped: it is carried in the ``"zoo"`` metadata (a JSON string)
  of the node or the graph, and :func:`from_nir` honours it. Per neuron: the reset rule (NIR's IF and LIF reset
  *to* ``v_reset``; a reset *by subtraction*, Rueckauer 2017, has no primitive), the initial membrane
  (``v_init * θ`` plus a calibrated ``v_offset``), calibrated input currents, the size of the threshold
  (per layer or per channel), and for LIF neurons the exact discretisation (``dt``, ``exp(-dt/τ)`` decay,
  gain), the refractory period and the synaptic filter on the output. For the graph: the encoder (analog or
  Poisson with its rate and seed), the readout (membrane, spike count, spiking softmax) and the network's
  config (architecture, recipe, input shape).
* What cannot be exported at all is refused with :class:`NIRExportError`, naming the layer and the way out:
  signed neurons (negative spikes), rate-gated and plain max-pooling (NIR has no max-pooling), IF neurons
  with a synaptic filter, and any other stateful or functional layer NIR has no node for.
* :func:`from_nir` rebuilds the network in this package from a graph or a ``.nir`` file: the round trip gives
  the same spikes, layer by layer (``tests/test_nir.py``).

Discrete time: one NIR evaluation is one timestep; the input node receives the encoder's output at each step.
Neurons fire when ``v >= θ`` (NIR writes ``v > θ``; the two differ only on exact ties).
"""
from __future__ import annotations

import copy
import json
import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

FORMAT = "snn-zoo-nir/1"
META = "zoo"


class NIRExportError(NotImplementedError):
    """The network holds something NIR cannot express and the project's metadata cannot carry exactly."""


class NIRImportError(ValueError):
    """The NIR graph cannot be rebuilt as an snn-zoo network (the message says why and what to do)."""


def _nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - the extra is part of the test install
        raise ImportError("NIR export needs the nir package: pip install 'snn-zoo[nir]'") from err
    return nir


# ------------------------------------------------------------------------------------------------- export
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _full(param: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A per-layer (numel 1) or per-channel ([C]) parameter broadcast to one neuron population ``[C, ...]``."""
    p = param.detach().cpu().to(torch.float32).reshape(-1)
    view = p.reshape(()) if p.numel() == 1 else p.reshape((-1,) + (1,) * (len(shape) - 1))
    return np.ascontiguousarray(np.broadcast_to(view.numpy(), shape)).astype(np.float32)


def _meta(**kw: Any) -> dict[str, str]:
    return {META: json.dumps(kw, sort_keys=True)}


def _pair(v: Any) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v), dtype=np.int64)


def _neuron_nodes(name: str, mod: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, Any]]:
    nir = _nir()
    from zoo.spiking.neuron import IFNode, LIFNode

    if mod.signed:
        raise NIRExportError(f"{name}: signed neurons (wang2022) emit negative spikes, which NIR's neurons do not "
                             "have; export this variant with --format onnx, or pick an unsigned variant")
    common = dict(reset=mod.reset, v_init=mod.v_init, threshold_numel=int(mod.threshold.numel()),
                  v_offset=_np(mod.v_offset).tolist() if "v_offset" in mod._buffers else None,
                  current=_np(mod.current).tolist() if "current" in mod._buffers else None,
                  fire="v >= threshold")
    theta = _full(mod.threshold, shape)
    zeros = np.zeros(shape, dtype=np.float32)
    if type(mod) is IFNode:
        if mod.synapse_decay is not None:
            raise NIRExportError(f"{name}: an IF neuron with a synaptic filter has no NIR node; export with "
                                 "--format onnx or convert without synapse_tau")
        node = nir.IF(r=np.ones(shape, dtype=np.float32), v_threshold=theta, v_reset=zeros,
                      metadata=_meta(module="IFNode", **common))
    elif type(mod) is LIFNode:
        # NIR: tau dv/dt = (v_leak - v) + r*I. Held over a step of dt, its exact solution is
        # v' = decay*v + (1 - decay)*r*I, which is this neuron's update for r = gain / (1 - decay).
        r = mod.gain / (1.0 - mod.decay)
        node = nir.LIF(tau=np.full(shape, mod.tau_rc, dtype=np.float32), r=np.full(shape, r, dtype=np.float32),
                       v_leak=zeros, v_threshold=theta, v_reset=zeros.copy(),
                       metadata=_meta(module="LIFNode", tau_rc=mod.tau_rc, tau_ref=mod.tau_ref, dt=mod.dt,
                                      gain=mod.gain, synapse_decay=mod.synapse_decay, **common))
    else:
        raise NIRExportError(f"{name}: {type(mod).__name__} has no NIR mapping")
    out = [(name, node)]
    if not bool((mod.amplitude == 1).all()):
        out.append((f"{name}.amplitude", nir.Scale(scale=_full(mod.amplitude, shape),
                                                   metadata=_meta(module="amplitude"))))
    return out


def _module_nodes(name: str, mod: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    """The NIR node(s) for one module of the body, in chain order."""
    nir = _nir()
    from zoo.spiking.layer import RateGatedMaxPool2d, Scale
    from zoo.spiking.neuron import BaseNode

    if isinstance(mod, BaseNode):
        return _neuron_nodes(name, mod, out_shape)
    if isinstance(mod, nn.Conv2d):
        if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
            raise NIRExportError(f"{name}: Conv2d with padding={mod.padding!r}, padding_mode={mod.padding_mode!r} "
                                 "has no NIR form; NIR takes explicit zero padding")
        bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, dtype=np.float32)
        return [(name, nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=_np(mod.weight),
                                  stride=_pair(mod.stride), padding=_pair(mod.padding), dilation=_pair(mod.dilation),
                                  groups=int(mod.groups), bias=bias,
                                  metadata=_meta(module="Conv2d", bias=mod.bias is not None)))]
    if isinstance(mod, nn.Linear):
        if mod.bias is None:
            return [(name, nir.Linear(weight=_np(mod.weight)))]
        return [(name, nir.Affine(weight=_np(mod.weight), bias=_np(mod.bias)))]
    if isinstance(mod, nn.AvgPool2d):
        if mod.ceil_mode or mod.divisor_override is not None or (_pair(mod.padding).any() and mod.count_include_pad):
            raise NIRExportError(f"{name}: AvgPool2d with ceil_mode, a divisor override or counted padding has no "
                                 "NIR form")
        return [(name, nir.AvgPool2d(kernel_size=_pair(mod.kernel_size), stride=_pair(mod.stride or mod.kernel_size),
                                     padding=_pair(mod.padding), metadata=_meta(module="AvgPool2d")))]
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if tuple(out_shape[1:]) != (1, 1):
            raise NIRExportError(f"{name}: AdaptiveAvgPool2d to {tuple(out_shape[1:])} has no NIR form (to 1x1 it "
                                 "is an average over the whole map)")
        k = np.array(in_shape[1:], dtype=np.int64)
        return [(name, nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=np.int64),
                                     metadata=_meta(module="AdaptiveAvgPool2d", output_size=1)))]
    if isinstance(mod, nn.Flatten):
        return [(name, _flatten(in_shape, mod.start_dim, mod.end_dim))]
    if isinstance(mod, Scale):
        return [(name, nir.Scale(scale=_full(mod.factor, out_shape), metadata=_meta(module="Scale")))]
    if isinstance(mod, (RateGatedMaxPool2d, nn.MaxPool2d)):
        raise NIRExportError(f"{name}: NIR has no max-pooling ({type(mod).__name__}); export with --format onnx, "
                             "or use a network with average pooling")
    raise NIRExportError(f"{name}: {type(mod).__name__} has no NIR mapping; export with --format onnx")


def _flatten(in_shape: tuple[int, ...], start_dim: int, end_dim: int):
    nir = _nir()
    # NIR's shapes leave out the batch: torch's dims 1.. are NIR's 0..
    start = start_dim - 1 if start_dim > 0 else start_dim
    end = end_dim - 1 if end_dim > 0 else end_dim
    if start < 0 and start_dim >= 0:
        raise NIRExportError("flattening the batch dimension has no NIR form")
    return nir.Flatten(input_type={"input": np.array(in_shape, dtype=np.int64)}, start_dim=start, end_dim=end,
                       metadata=_meta(module="Flatten"))


def _shapes(snn: nn.Module) -> fx.GraphModule:
    """A copy of the body with every node's output shape for one step of one image (``meta['tensor_meta']``)."""
    from torch.fx.passes.shape_prop import ShapeProp

    body = copy.deepcopy(snn.body).eval()
    for m in body.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()
            m.steps, m.batch = 1, 1
    x = torch.zeros((1, *snn.config["input_shape"]))
    with torch.no_grad():
        ShapeProp(body).propagate(x)
    return body


def _encoder_readout(snn: nn.Module) -> tuple[dict, dict]:
    from zoo.spiking.layer import AnalogEncoder, MembraneReadout, PoissonEncoder, SoftmaxReadout, SpikeCountReadout

    enc, ro = snn.encoder, snn.readout
    if type(enc) is AnalogEncoder:
        encoder = {"kind": "analog"}
    elif type(enc) is PoissonEncoder:
        encoder = {"kind": "poisson", "rate": enc.rate, "seed": enc.seed}
    else:
        raise NIRExportError(f"encoder {type(enc).__name__} has no NIR export")
    if type(ro) is MembraneReadout:
        readout = {"kind": "membrane"}
    elif type(ro) is SpikeCountReadout:
        readout = {"kind": "spike_count"}
    elif type(ro) is SoftmaxReadout:
        readout = {"kind": "softmax", "seed": ro.seed}
    else:
        raise NIRExportError(f"readout {type(ro).__name__} has no NIR export")
    return encoder, readout


def to_nir(snn: nn.Module):
    """The network as a ``nir.NIRGraph`` (see the module docstring for what goes where)."""
    nir = _nir()
    if not (snn.config or {}).get("input_shape"):
        raise ValueError("the network's config has no input_shape; convert it with zoo.convert, which records it")
    encoder, readout = _encoder_readout(snn)
    body = _shapes(snn)
    shape = lambda n: tuple(int(s) for s in n.meta["tensor_meta"].shape[1:])  # noqa: E731
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(snn.config["input_shape"])})}
    edges: list[tuple[str, str]] = []
    sources: dict[fx.Node, list[str]] = {}
    for n in body.graph.nodes:
        if n.op == "placeholder":
            sources[n] = ["input"]
        elif n.op == "call_module" or (n.op == "call_function" and n.target is torch.flatten):
            if len(n.args) < 1 or not isinstance(n.args[0], fx.Node) or n.kwargs and n.op == "call_module":
                raise NIRExportError(f"{n.target}: only single-input layers can be exported")
            arg = n.args[0]
            if n.op == "call_module":
                chain = _module_nodes(str(n.target), body.get_submodule(n.target), shape(arg), shape(n))
            else:
                start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
                end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
                chain = [(n.name, _flatten(shape(arg), start, end))]
            edges += [(s, chain[0][0]) for s in sources[arg]]
            edges += [(a[0], b[0]) for a, b in zip(chain, chain[1:])]
            nodes.update(chain)
            sources[n] = [chain[-1][0]]
        elif n.op == "call_function" and n.target in (operator.add, torch.add) and len(n.args) == 2 \
                and all(isinstance(a, fx.Node) for a in n.args) and not n.kwargs:
            sources[n] = sources[n.args[0]] + sources[n.args[1]]  # NIR sums a node's inputs
        elif n.op == "output":
            out = n.args[0]
            last = sources[out]
            if readout["kind"] == "spike_count":  # the spiking output layer is a neuron of the graph
                chain = _neuron_nodes("readout", snn.readout.neuron, shape(out))
                nodes.update(chain)
                edges += [(s, "readout") for s in last]
                last = ["readout"]
            nodes["output"] = nir.Output(output_type={"output": np.array(shape(out))})
            edges += [(s, "output") for s in last]
        else:
            raise NIRExportError(f"{n.name}: {n.op} {getattr(n.target, '__name__', n.target)} has no NIR mapping; "
                                 "export with --format onnx")
    meta = _meta(format=FORMAT, encoder=encoder, readout=readout, config=snn.config)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def export_nir(snn: nn.Module, path: str | Path) -> Path:
    """Write :func:`to_nir`'s graph to ``path`` (``.nir``, HDF5) atomically."""
    from zoo.utils import atomic_path

    graph = to_nir(snn)
    path = Path(path)
    with atomic_path(path) as tmp:
        _nir().write(tmp, graph)
    return path


# ------------------------------------------------------------------------------------------------- import
def node_meta(node: Any) -> dict[str, Any]:
    """The snn-zoo metadata of a NIR node or graph (``{}`` for a graph written by another tool)."""
    raw = (getattr(node, "metadata", None) or {}).get(META)
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(str(raw))


def _collapse(full: np.ndarray, numel: int | None) -> torch.Tensor:
    """Back from a neuron population's ``[C, ...]`` parameter to per-layer ``[1]`` or per-channel ``[C]``."""
    t = torch.from_numpy(np.asarray(full, dtype=np.float32)).reshape(-1) if np.ndim(full) else \
        torch.tensor([float(full)])
    if numel is None:
        numel = 1 if bool((t == t[0]).all()) else int(np.shape(full)[0])
    per = t.reshape(numel, -1)
    if not bool((per == per[:, :1]).all()):
        raise NIRImportError("thresholds vary within a channel; snn-zoo neurons have one threshold per layer or "
                             "per channel")
    return per[:, 0].clone()


def _neuron_from_nir(name: str, node: Any):
    nir = _nir()
    from zoo.spiking.neuron import IFNode, LIFNode

    m = node_meta(node)
    theta = _collapse(node.v_threshold, m.get("threshold_numel"))
    kw = dict(amplitude=1.0, v_init=m.get("v_init", 0.0),
              v_offset=torch.tensor(m["v_offset"]) if m.get("v_offset") is not None else None,
              current=torch.tensor(m["current"]) if m.get("current") is not None else None)
    reset = m.get("reset")
    if reset is None:  # a graph from another tool: NIR's reset to v_reset, which snn-zoo has for v_reset = 0
        if not np.allclose(node.v_reset, 0.0):
            raise NIRImportError(f"{name}: reset to v_reset != 0 has no snn-zoo neuron")
        reset = "zero"
    if isinstance(node, nir.IF):
        if not m and not np.allclose(node.r, 1.0):
            raise NIRImportError(f"{name}: IF with r != 1; fold r into the weights before importing")
        return IFNode(theta, reset=reset, **kw)
    if isinstance(node, nir.LIF):
        if not m:
            raise NIRImportError(f"{name}: a LIF neuron from another tool has no exact discrete-time form here; "
                                 "snn-zoo imports the LIF neurons it exported itself")
        return LIFNode(theta, tau_rc=m["tau_rc"], tau_ref=m["tau_ref"], dt=m["dt"], gain=m["gain"], reset=reset,
                       synapse_decay=m["synapse_decay"], **kw)
    raise NIRImportError(f"{name}: {type(node).__name__} is not a neuron snn-zoo imports")


def _module_from_nir(name: str, node: Any) -> nn.Module:
    nir = _nir()
    from zoo.spiking.layer import Scale

    m = node_meta(node)
    if isinstance(node, (nir.IF, nir.LIF)):
        return _neuron_from_nir(name, node)
    if isinstance(node, nir.Conv2d):
        w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
        has_bias = m.get("bias", True)
        conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                         padding=tuple(int(p) for p in node.padding), dilation=tuple(node.dilation),
                         groups=int(node.groups), bias=has_bias)
        conv.weight.data.copy_(w)
        if has_bias:
            conv.bias.data.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
        return conv
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        lin.weight.data.copy_(w)
        if isinstance(node, nir.Affine):
            lin.bias.data.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
        return lin
    if isinstance(node, nir.AvgPool2d):
        if m.get("module") == "AdaptiveAvgPool2d":
            return nn.AdaptiveAvgPool2d(m["output_size"])
        return nn.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride),
                            tuple(int(p) for p in node.padding))
    if isinstance(node, nir.Flatten):
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return nn.Flatten(start, end)
    if isinstance(node, nir.Scale):
        s = np.asarray(node.scale, dtype=np.float32)
        return Scale(_collapse(s, None))
    raise NIRImportError(f"{name}: NIR node {type(node).__name__} has no snn-zoo layer")


def _topological(graph: Any) -> list[str]:
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order, done, pending = [], set(), list(graph.nodes)
    while pending:  # the first ready node in the graph's own order, so layers keep the order they were written in
        key = next((k for k in pending if all(p in done for p in preds[k])), None)
        if key is None:
            raise NIRImportError("the graph has a cycle (recurrent connections); snn-zoo imports feed-forward "
                                 "networks")
        order.append(key)
        done.add(key)
        pending.remove(key)
    return order


def from_nir(graph: Any):
    """Rebuild a :class:`~zoo.spiking.SpikingNetwork` from a ``nir.NIRGraph`` or a ``.nir`` file.

    A graph written by :func:`to_nir` comes back exactly (same neurons, encoder, readout and config). A graph
    from another tool is read with an analog encoder and a membrane readout of its output; its IF neurons reset
    to zero (NIR's ``v_reset = 0``)."""
    nir = _nir()
    from zoo.spiking.layer import AnalogEncoder, MembraneReadout, PoissonEncoder, SoftmaxReadout, SpikeCountReadout
    from zoo.spiking.network import SpikingNetwork

    if isinstance(graph, (str, Path)):
        graph = nir.read(str(graph))
    gm = node_meta(graph)
    if gm and gm.get("format") != FORMAT:
        raise NIRImportError(f"metadata format {gm.get('format')!r}; this snn-zoo reads {FORMAT!r}: upgrade snn-zoo")
    encoder_spec, readout_spec = gm.get("encoder", {"kind": "analog"}), gm.get("readout", {"kind": "membrane"})
    fxg = fx.Graph()
    values: dict[str, fx.Node] = {}
    modules: dict[str, nn.Module] = {}
    readout = None
    incoming: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        incoming[b].append(a)
    for key in _topological(graph):
        node = graph.nodes[key]
        if isinstance(node, nir.Input):
            values[key] = fxg.placeholder("x")
            continue
        ins = [values[s] for s in incoming[key]]
        if not ins:
            raise NIRImportError(f"node {key!r} has no input edge")
        v = ins[0]
        for other in ins[1:]:
            v = fxg.call_function(operator.add, (v, other))
        if isinstance(node, nir.Output):
            fxg.output(v)
            continue
        if key == "readout" and readout_spec["kind"] == "spike_count":
            neuron = _neuron_from_nir(key, node)
            readout = SpikeCountReadout(neuron.threshold, reset=neuron.reset)
            values[key] = v
            continue
        if node_meta(node).get("module") == "amplitude" and len(incoming[key]) == 1:
            prev = modules.get(incoming[key][0])
            if prev is not None and hasattr(prev, "amplitude"):  # back into the neuron it came from
                prev.amplitude = _collapse(np.asarray(node.scale), prev.threshold.numel())
                values[key] = v
                continue
        modules[key] = _module_from_nir(key, node)
        values[key] = fxg.call_module(key, (v,))
    root = nn.Module()
    for key, mod in modules.items():  # nested as the names say, in graph order (as torch.fx traced them)
        *parents, leaf = key.split(".")
        owner = root
        for p in parents:
            if not hasattr(owner, p):
                owner.add_module(p, nn.Module())
            owner = getattr(owner, p)
        owner.add_module(leaf, mod)
    body = fx.GraphModule(root, fxg)
    if encoder_spec["kind"] == "poisson":
        encoder = PoissonEncoder(encoder_spec["rate"], encoder_spec["seed"])
    else:
        encoder = AnalogEncoder()
    if readout is None:
        readout = SoftmaxReadout(readout_spec["seed"]) if readout_spec["kind"] == "softmax" else MembraneReadout()
    return SpikingNetwork(encoder, body, readout, gm.get("config") or {}).eval()


load_nir = from_nir


__all__ = ["to_nir", "export_nir", "from_nir", "load_nir", "node_meta", "NIRExportError", "NIRImportError", "FORMAT"]
