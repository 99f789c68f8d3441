"""One timestep of a converted SNN as an ONNX graph with explicit state, and onnxruntime running it for T steps.

* :func:`export_snn_step` exports ONE timestep of a :class:`~zoo.spiking.SpikingNetwork` as a stateless graph,
  ``(x, state_in...) -> (current, state_out...)``, built from the neurons' own one-step update
  (:meth:`~zoo.spiking.IFNode.step`);
* :func:`run_snn_onnx` loops it in onnxruntime for ``T`` steps (what ``snn.run(x, T)`` computes), starting from
  :func:`snn_initial_state`.
"""
from __future__ import annotations

import copy
import operator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, fx, nn

from zoo.export import INPUT_NAME, _export_file, _session


class _IFStep(nn.Module):
    """One timestep of an :class:`~zoo.spiking.IFNode` with explicit state, ``(I, v) -> (out, v')``: the
    neuron's own :meth:`~zoo.spiking.IFNode.step` (calibrated input currents included)."""

    def __init__(self, node: nn.Module) -> None:
        super().__init__()
        self.node = copy.deepcopy(node)

    def forward(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.node.step(x, v)


class _PoolStep(nn.Module):
    """One timestep of a :class:`~zoo.spiking.RateGatedMaxPool2d`: ``(x, counts) -> (out, counts')``."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode)

    def forward(self, x: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        leader = self.pool(counts)
        counts = counts + torch.sign(x)
        return (self.pool(counts) - leader) * self.pool(x.abs()), counts


def _step_graph(snn: nn.Module) -> tuple[fx.GraphModule, list[tuple[str, str]]]:
    """Rewrite ``snn.body`` into a one-timestep graph whose stateful modules take and return their state."""
    from zoo.conversion.graph import _set_module
    from zoo.spiking.layer import AnalogEncoder, MembraneReadout, RateGatedMaxPool2d
    from zoo.spiking.neuron import IFNode

    if not isinstance(snn.encoder, AnalogEncoder):
        raise NotImplementedError(f"export_snn_step supports the analog encoder only, not {type(snn.encoder).__name__}")
    if type(snn.readout) is not MembraneReadout:
        raise NotImplementedError(f"export_snn_step supports the membrane readout only, not {type(snn.readout).__name__}")
    body: fx.GraphModule = copy.deepcopy(snn.body)
    graph = body.graph
    x_node = next(n for n in graph.nodes if n.op == "placeholder")
    out_node = next(n for n in graph.nodes if n.op == "output")
    state: list[tuple[str, str]] = []  # (module path, kind)
    new_outputs = []
    last_ph = x_node
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        mod = body.get_submodule(node.target)
        if isinstance(mod, IFNode):
            if mod.synapse_decay is not None:
                raise NotImplementedError(f"{node.target}: synaptic filters are not supported by export_snn_step")
            if mod.signed:
                raise NotImplementedError(f"{node.target}: signed neurons carry their spike count as a second "
                                          "state, which export_snn_step does not have yet")
            step, kind = _IFStep(mod), "v"
        elif isinstance(mod, RateGatedMaxPool2d):
            step, kind = _PoolStep(mod), "counts"
        elif hasattr(mod, "reset_state"):
            raise NotImplementedError(f"{node.target}: stateful {type(mod).__name__} is not supported by export_snn_step")
        else:
            continue
        _set_module(body, node.target, step)
        with graph.inserting_after(last_ph):
            ph = graph.placeholder(f"{kind}_in_{len(state)}")
        last_ph = ph
        with graph.inserting_after(node):
            res = graph.call_function(operator.getitem, (node, 0))
            nxt = graph.call_function(operator.getitem, (node, 1))
        node.replace_all_uses_with(res, delete_user_cb=lambda u: u is not res and u is not nxt)
        node.args = (node.args[0], ph)
        new_outputs.append(nxt)
        state.append((str(node.target), kind))
    current = out_node.args[0]
    out_node.args = ((current, *new_outputs),)
    graph.lint()
    body.recompile()
    return body, state


@torch.no_grad()
def _initial_state(snn: nn.Module, state: list[tuple[str, str]], x: Tensor) -> list[Tensor]:
    """Initial state tensors shaped as in the network (found by one traced run): the neurons' initial membranes
    (:meth:`~zoo.spiking.BaseNode.initial_v`), zeros for the rest."""
    from torch.fx.passes.shape_prop import ShapeProp

    shapes: dict[str, torch.Size] = {}
    body = copy.deepcopy(snn.body).eval()
    for m in body.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()
            m.steps, m.batch = 1, x.shape[0]
    ShapeProp(body).propagate(x)
    for node in body.graph.nodes:
        if node.op == "call_module" and node.args:
            a = node.args[0]
            if isinstance(a, fx.Node) and "tensor_meta" in a.meta:
                shapes[str(node.target)] = a.meta["tensor_meta"].shape
    init = []
    for target, kind in state:
        t = torch.zeros(shapes[target], dtype=x.dtype, device=x.device)
        init.append(snn.body.get_submodule(target).initial_v(t) if kind == "v" else t)
    return init


def export_snn_step(snn: nn.Module, example: Tensor, path: str | Path, *, opset: int | None = None,
                    exporter: str = "auto") -> Path:
    """Export ONE timestep of a converted SNN as a stateless ONNX graph with explicit state.

    Inputs: ``input`` (the image ``[B, ...]``, analog encoder) and one state tensor per stateful layer
    (``v_in_k`` membrane potentials of IF neurons, ``counts_in_k`` spike counts of rate-gated max-pooling);
    outputs: ``current`` (the output layer's current for this step, ``[B, K]``) and ``v_out_k``/``counts_out_k``.
    Loop it ``T`` times feeding each step's state outputs back, summing ``current``: :func:`run_snn_onnx` does
    this and matches ``snn.run(x, T)`` (membrane readout). Initial states are zeros, except the neurons' initial
    membranes (``v_init * θ`` plus a calibrated ``v_offset``), stored per channel as the metadata ``zoo.v_start``
    and rebuilt by
    :func:`snn_initial_state`. Supports IF neurons, rate-gated max-pool, analog input and membrane readout.
    """
    step, state = _step_graph(snn)
    step.eval()
    param = next(iter(step.parameters()), None)
    if param is not None:
        example = example.to(device=param.device, dtype=param.dtype)
    init = _initial_state(snn, state, example)
    names_in = [INPUT_NAME] + [f"{k}_in_{i}" for i, (_, k) in enumerate(state)]
    names_out = ["current"] + [f"{k}_out_{i}" for i, (_, k) in enumerate(state)]
    v_start = [_v_start(snn.body.get_submodule(t)) if k == "v" else [0.0] for t, k in state]
    return _export_file(
        step, (example, *init), path, opset=opset, exporter=exporter, dynamic=[True] * len(names_in),
        input_names=names_in, output_names=names_out, dynamic_outputs=[True] * len(names_out),
        metadata={"zoo.kind": "snn_step", "zoo.example_batch": int(example.shape[0]), "zoo.dynamic_batch": 1,
                  "zoo.input_shape": list(example.shape[1:]), "zoo.state_layers": [t for t, _ in state],
                  "zoo.state_kinds": [k for _, k in state], "zoo.v_start": v_start,
                  "zoo.recipe": (getattr(snn, "config", {}) or {}).get("recipe", {}).get("name")})


def _v_start(node: nn.Module) -> list[float]:
    """A neuron's initial membrane per channel (one value for the layer where it is uniform)."""
    v = node.initial_v(torch.zeros((1, node.threshold.numel()) if "v_offset" not in node._buffers
                                   else (1, node.v_offset.numel())))
    v = v.flatten()
    return [float(v[0])] if bool((v == v[0]).all()) else v.tolist()


def snn_initial_state(path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Initial state feeds for a step graph from :func:`export_snn_step`, for images ``x`` ``[B, ...]``: the
    state shapes come from the graph (batch replaced by ``B``)."""
    import ast

    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    starts = ast.literal_eval(meta.get("zoo.v_start", "[]"))
    feeds = {}
    for k, inp in enumerate(proto.graph.input[1:]):
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        shape = [x.shape[0]] + dims[1:]
        start = np.asarray(starts[k] if k < len(starts) else [0.0], dtype=np.float32)
        t = np.zeros(shape, dtype=np.float32) + (start.reshape(()) if start.size == 1
                                                 else start.reshape((1, -1) + (1,) * (len(shape) - 2)))
        feeds[inp.name] = t.astype(np.float32)
    return feeds


def run_snn_onnx(path: str | Path, x: np.ndarray | Tensor, timesteps: int, *, threads: int | None = None) -> np.ndarray:
    """Loop a step graph from :func:`export_snn_step` in onnxruntime for ``timesteps`` steps from the initial
    state; returns the cumulative output current ``[B, K]`` (``snn.run(x, timesteps)`` with membrane readout)."""
    if isinstance(x, Tensor):
        x = x.detach().float().cpu().numpy()
    sess = _session(path, threads)
    names_in = [i.name for i in sess.get_inputs()]
    state = snn_initial_state(path, x)
    total = None
    for _ in range(timesteps):
        outs = sess.run(None, {names_in[0]: x, **state})
        total = outs[0] if total is None else total + outs[0]
        state = dict(zip(names_in[1:], outs[1:]))
    return total


__all__ = ["export_snn_step", "run_snn_onnx", "snn_initial_state"]
