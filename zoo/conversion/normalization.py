"""Normalization: where the thresholds come from, and the two equivalent forms of a normalized SNN.

Thresholds (one per layer, or per channel) come from

* ``none``       — 1 for every layer (Cao 2015);
* ``model``      — the largest activation the weights allow for inputs bounded by ``input_bound`` (Diehl 2015,
  model-based), found by propagating bounds through the graph with non-negative weights;
* ``max``        — the largest activation on calibration data (Diehl 2015, data-based);
* ``percentile`` — the p-th percentile of positive activations (Rueckauer 2017, robust normalization);
* ``trained``    — the ANN's own trained clip: QCFS's threshold lambda (Bu 2022), a clipped ReLU's bound; the
  threshold of a directly trained SNN's PLIF (Fang 2021) or TSSL (Zhang & Li 2020) neurons, whose layers are
  kept as trained.

**Threshold form** (threshold balancing): weights stay as trained; a neuron with threshold θ emits spikes of
value θ, so every layer sees currents in the ANN's units.

**Weight form** (weight normalization): thresholds are 1 and spikes binary; each edge carries the factor
``θ_source / θ_target``, folded into the weights of the adjacent Conv/Linear where there is one. Edges that
have none — the identity shortcut into a residual add, a branch into a concatenation — keep an explicit
:class:`~zoo.spiking.layer.Scale`: each branch into an add or concat is normalized by its own factor (Hu et al.
2018). Both forms emit the same spikes.
"""
from __future__ import annotations

import copy
import operator

import torch
from torch import Tensor, fx, nn

from zoo.conversion.graph import ADD_FUNCS, CAT_FUNCS, ActPoint, ConversionError, act_points, analog_fed
from zoo.spiking.layer import RateGatedMaxPool2d, Scale
from zoo.spiking.neuron import BaseNode

EPS = 1e-6


# ------------------------------------------------------------------------------------------- thresholds
@torch.no_grad()
def model_bounds(canonical: fx.GraphModule, input_shape: tuple[int, ...], input_bound: float = 1.0) -> dict[str, Tensor]:
    """Upper bounds of every ActPoint's output (per channel) for any input with ``|x| <= input_bound``.

    A copy of the graph is run on the bound itself with ``|W|`` in layers fed by the (signed) input and
    ``max(W, 0)`` after activations (whose outputs are non-negative); pooling, sums and concatenations of
    bounds are bounds.
    """
    gm = copy.deepcopy(canonical).eval()
    analog = analog_fed(gm, lambda n: isinstance(gm.get_submodule(n.target), ActPoint))
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(m.weight.abs() if node.name in analog else m.weight.clamp(min=0))
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                m.weight.abs_()
    points = act_points(gm)
    maxima: dict[str, Tensor] = {}

    def hook(name):
        def f(mod, inp, out):
            o = out.detach()
            maxima[name] = o.transpose(0, 1).reshape(o.shape[1], -1).max(1).values if o.ndim > 1 else o.max().reshape(1)
        return f

    handles = [p.register_forward_hook(hook(n)) for n, p in points.items()]
    try:
        dtype = next((p.dtype for p in gm.parameters()), torch.float32)
        gm(torch.full((1,) + tuple(input_shape), float(input_bound), dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return maxima


#: ActPoint kinds of a directly trained SNN's neurons: what the error calls them, and the variant that keeps them
DIRECT_KINDS = {"plif": ("PLIF", "fang2021"), "tssl": ("TSSL", "zhang2020")}


def _check_direct(name: str, p: ActPoint, recipe) -> None:
    """A directly trained SNN's neuron layer is kept as trained (norm='trained'), by its own variant; a variant
    that keeps trained neurons (neuron plif/tssl) takes no ANN."""
    if p.kind in DIRECT_KINDS:
        label, variant = DIRECT_KINDS[p.kind]
        if recipe.norm != "trained":
            raise ConversionError(
                f"layer {name!r} is a trained {label} neuron layer: the model is a directly trained SNN, whose "
                f"neurons and thresholds are part of what was trained, not an ANN to normalize with "
                f"norm={recipe.norm!r}. Use variant {variant} (norm='trained'), which keeps them")
        if recipe.neuron != p.kind:
            raise ConversionError(f"layer {name!r} is a trained {label} neuron layer, but variant {recipe.name!r} "
                                  f"is the recipe of another neuron model: use variant {variant}")
    elif recipe.neuron in DIRECT_KINDS and p.kind != "output":
        raise ConversionError(
            f"variant {recipe.name!r} keeps the trained {DIRECT_KINDS[recipe.neuron][0]} neurons of a directly "
            f"trained SNN (act: {recipe.neuron}), but layer {name!r} is a {p.kind} activation: convert an ANN with "
            "a conversion variant (e.g. rueckauer2017, low-latency, or bu2022 for QCFS), or train the net as an SNN")


def compute_thresholds(canonical: fx.GraphModule, recipe, stats=None, *, input_shape=None,
                       input_bound: float | None = None) -> dict[str, Tensor]:
    """Threshold (1-D tensor: 1 value per layer or 1 per channel) for every ActPoint, per ``recipe.norm``."""
    points = act_points(canonical)
    out: dict[str, Tensor] = {}
    if recipe.norm == "model":
        if input_shape is None:
            raise ValueError("model-based normalization needs the input shape")
        bounds = model_bounds(canonical, input_shape, input_bound or 1.0)
    for name, p in points.items():
        _check_direct(name, p, recipe)
        if recipe.norm == "trained":
            th = _trained_threshold(name, p)
        elif recipe.norm == "none":
            th = torch.full((1,), float(getattr(recipe, "threshold", 1.0)))
        elif recipe.norm == "model":
            b = bounds[name]
            th = b if recipe.channel_wise else b.max().reshape(1)
        else:
            if stats is None or name not in stats:
                raise ValueError(f"norm={recipe.norm!r} needs calibration statistics for {name!r}")
            s = stats[name]
            q = 100.0 if recipe.norm == "max" else recipe.percentile
            th = s.percentile(q, recipe.channel_wise).reshape(-1)
        th = th.float().clamp(min=EPS)
        if p.kind == "clip":
            th = th.clamp(max=p.clip)
        elif p.kind == "qcfs":
            th = torch.minimum(th, p.fn.threshold.detach().float().abs().clamp(min=EPS))
        out[name] = th
    if not getattr(recipe, "normalize_output", True):
        for name, p in points.items():
            if p.kind == "output":  # the output layer keeps its trained weights (Diehl et al.'s code)
                feeding = [out[n] for n in _feeding_points(canonical, name, points)]
                if feeding:
                    out[name] = torch.stack([t.max() for t in feeding]).max().reshape(1)
    return out


def _feeding_points(gm: fx.GraphModule, name: str, points: dict) -> list[str]:
    """The ActPoints whose outputs reach ActPoint ``name`` without passing another ActPoint."""
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == name)
    found, seen, todo = [], set(), list(node.all_input_nodes)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module" and n.target in points:
            found.append(str(n.target))
        else:
            todo.extend(n.all_input_nodes)
    return found


def _trained_threshold(name: str, p: ActPoint) -> Tensor:
    if p.kind == "qcfs":
        return p.fn.threshold.detach().float().abs().reshape(-1)
    if p.kind in DIRECT_KINDS:
        return p.fn.threshold.detach().float().reshape(-1)
    if p.kind == "clip":
        return torch.tensor([float(p.clip)])
    if p.kind == "output":
        return torch.ones(1)
    raise ConversionError(
        f"norm='trained' takes each layer's threshold from the ANN's trained activation (QCFS's lambda, a "
        f"clipped ReLU's bound, a directly trained PLIF or TSSL neuron's threshold), but layer {name!r} is a {p.kind} activation with none. Train the ANN with "
        "act: qcfs (params.yaml models.<name>.arch_kwargs, e.g. fine-tuned with train.init_from), or choose a "
        "variant with data-based thresholds such as low-latency or rueckauer2017")


def neuron_depths(gm: fx.GraphModule, is_neuron) -> dict[str, int]:
    """Depth of each neuron node: 1 + the largest depth of the neurons upstream of it."""
    depth: dict[fx.Node, int] = {}
    result = {}
    for node in gm.graph.nodes:
        ins = [a for a in node.all_input_nodes]
        d = max((depth[a] for a in ins), default=0)
        if node.op == "call_module" and is_neuron(node):
            d += 1
            result[str(node.target)] = d
        depth[node] = d
    return result


# ---------------------------------------------------------------------------------------- weight form
_COMMUTING = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, RateGatedMaxPool2d, nn.Flatten)
_COMMUTING_FUNCS = {torch.flatten, torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.avg_pool2d}
_COMMUTING_METHODS = {"flatten", "view", "reshape", "contiguous", "mean"}


class _Edges:
    """Per-edge multiplicative factors ``(src, dst) -> Tensor`` (scalar or per channel of src's output)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.mult: dict[tuple[fx.Node, fx.Node], Tensor] = {}

    def module(self, node: fx.Node):
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    def kind(self, node: fx.Node) -> str:
        m = self.module(node)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            return "synaptic"
        if isinstance(m, BaseNode):
            return "neuron"
        if isinstance(m, _COMMUTING):
            return "flatten" if isinstance(m, nn.Flatten) else "commuting"
        if node.op == "call_function" and node.target in ADD_FUNCS:
            return "add"
        if node.op == "call_function" and node.target in CAT_FUNCS:
            return "cat"
        if node.op == "call_function" and node.target in _COMMUTING_FUNCS:
            return "flatten" if node.target is torch.flatten else "commuting"
        if node.op == "call_method" and node.target in _COMMUTING_METHODS:
            return "commuting" if node.target == "mean" else "flatten"
        return "other"

    def leave(self, src: fx.Node, dst: fx.Node, m: Tensor) -> None:
        key = (src, dst)
        self.mult[key] = self.mult[key] * m if key in self.mult else m.clone()

    # backward: a factor on the input of dst, pushed towards the producers
    def push_back(self, src: fx.Node, dst: fx.Node, m: Tensor) -> None:
        kind = self.kind(src)
        if len(src.users) == 1:
            if kind == "synaptic":
                layer = self.module(src)
                shape = (-1,) + (1,) * (layer.weight.ndim - 1)
                m = m.to(layer.weight.dtype)
                layer.weight.mul_(m.reshape(shape) if m.numel() > 1 else m)
                if layer.bias is not None:
                    layer.bias.mul_(m)
                return
            if kind == "add":
                for a in src.all_input_nodes:
                    self.push_back(a, src, m)
                return
            if kind == "cat" and _cat_dim(src) == 1:
                parts = list(src.args[0])
                if m.numel() == 1:
                    for a in parts:
                        self.push_back(a, src, m)
                    return
                sizes = [_channels(a) for a in parts]
                if None not in sizes and sum(sizes) == m.numel():
                    for a, piece in zip(parts, torch.split(m, sizes)):
                        self.push_back(a, src, piece)
                    return
            if kind == "commuting" or (kind == "flatten" and m.numel() == 1):
                self.push_back(src.all_input_nodes[0], src, m)
                return
        self.leave(src, dst, m)

    # forward: a factor on the output of src (on the edge src->dst), pushed towards the consumers
    def push_fwd(self, src: fx.Node, dst: fx.Node, m: Tensor) -> None:
        kind = self.kind(dst)
        if kind == "synaptic":
            layer = self.module(dst)
            w = layer.weight
            m = m.to(w.dtype)
            if m.numel() == 1:
                w.mul_(m)
            elif isinstance(layer, nn.Linear):
                w.mul_(m.reshape(1, -1))
            else:  # conv, grouped: input channel c of group g is weight[g*out_per_group:, c - g*in_per_group]
                groups = layer.groups
                cin_g = w.shape[1]
                cout_g = w.shape[0] // groups
                per_out = m.reshape(groups, 1, cin_g).expand(groups, cout_g, cin_g).reshape(w.shape[0], cin_g)
                w.mul_(per_out.reshape(w.shape[0], cin_g, *([1] * (w.ndim - 2))))
            return
        if kind == "commuting":
            for u in list(dst.users):
                self.push_fwd(dst, u, m)
            return
        if kind == "flatten":
            shape = dst.all_input_nodes[0].meta.get("tensor_meta")
            if m.numel() > 1 and shape is not None:
                per = int(torch.tensor(shape.shape[2:]).prod()) if len(shape.shape) > 2 else 1
                m = m.repeat_interleave(per)
            for u in list(dst.users):
                self.push_fwd(dst, u, m)
            return
        self.leave(src, dst, m)


def _cat_dim(node: fx.Node) -> int:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _channels(node: fx.Node) -> int | None:
    tm = node.meta.get("tensor_meta")
    return int(tm.shape[1]) if tm is not None and len(tm.shape) > 1 else None


@torch.no_grad()
def to_weight_form(gm: fx.GraphModule, output_threshold: Tensor | None = None) -> fx.GraphModule:
    """Rewrite a threshold-form SNN body in place into the weight-normalized form (see module docstring).

    ``gm`` must carry shape metadata (``ShapeProp``) for per-channel thresholds through flatten.
    ``output_threshold``: the threshold of a spiking readout (spike-count); its ``1 / threshold`` is folded into
    the layer producing the output too, so that readout's threshold becomes 1 and every factor in the network
    is a ratio of thresholds (model-based bounds grow by orders of magnitude with depth: as thresholds they
    overflow float16, as ratios they do not).
    """
    edges = _Edges(gm)
    if output_threshold is not None:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        src = out.args[0]
        if not isinstance(src, fx.Node):
            raise ValueError("a spiking readout needs a network with a single output tensor")
        edges.push_back(src, out, 1.0 / output_threshold.double().max().reshape(1))
    neurons = [n for n in gm.graph.nodes if edges.kind(n) == "neuron"]
    for node in neurons:
        mod = edges.module(node)
        th, amp = mod.threshold.double(), mod.amplitude.double()  # float64: no rounding of the factors
        edges.push_back(node.all_input_nodes[0], node, 1.0 / th)
        for u in list(node.users):
            edges.push_fwd(node, u, amp)
        mod.threshold.fill_(1.0)
        mod.amplitude.fill_(1.0)
        if mod.threshold.numel() > 1:  # per-channel thresholds are all 1 now
            mod.threshold = mod.threshold[:1].clone()
            mod.amplitude = mod.amplitude[:1].clone()
    for k, ((src, dst), m) in enumerate(edges.mult.items()):
        name = f"edge_scale_{k}"
        gm.add_submodule(name, Scale(m))
        with gm.graph.inserting_after(src):
            s = gm.graph.call_module(name, (src,))
        dst.replace_input_with(src, s)
    gm.graph.lint()
    gm.recompile()
    return gm


__all__ = ["compute_thresholds", "model_bounds", "to_weight_form", "neuron_depths"]
