"""Graph canonicalization: any traceable classifier becomes a torch.fx graph of a small, known set of ops.

``canonicalize(model, example)`` returns a GraphModule that computes exactly what ``model`` computes (eval
mode), in which

* every activation (``nn.ReLU``/``ReLU6``/``Hardtanh(0, c)``, ``F.relu``, ``torch.relu_``, ``x.relu()``,
  ``clamp(min=0)``, timm's ``BatchNormAct2d.act``, soft-LIF) is an :class:`ActPoint` module — one per call, so
  each becomes one layer of spiking neurons;
* BatchNorm that follows a Conv/Linear is folded into it (timm's ``BatchNormAct2d`` is split first);
* dropout and identities are removed, functional max-pooling becomes an ``nn.MaxPool2d`` module;
* the output passes through an ``ActPoint(kind="output")`` probe (calibration records the logits there).

Anything else raises :class:`ConversionError` naming the node, its module path and the supported set.
"""
from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


class ConversionError(RuntimeError):
    """The model cannot be converted; the message names the node, its module path and what is supported."""


# -------------------------------------------------------------------------------------------- ActPoint
class ActPoint(nn.Module):
    """A canonical activation: where one layer of spiking neurons will be.

    kind: ``relu``, ``clip`` (ReLU clipped at ``clip``), ``softlif`` (Hunsberger's soft-LIF, kept as ``fn``),
    ``qcfs`` (Bu et al.'s quantization clip-floor-shift, kept as ``fn``, with its trained threshold), ``plif`` (a
    trained :class:`zoo.spiking.PLIFNode` of a directly trained SNN, kept as ``fn``; as an activation it is the
    neuron's first step from rest, ``Θ(x/τ - θ)``), ``tssl`` (a trained :class:`zoo.spiking.TSSLNode`, kept as
    ``fn``; as an activation its first step from rest, the PSP ``Θ(x - θ) / τ_s``) or ``output`` (identity probe
    on the logits). An attached ``observer`` records its output.
    """

    def __init__(self, kind: str = "relu", clip: float | None = None, fn: nn.Module | None = None) -> None:
        super().__init__()
        self.kind, self.clip, self.fn = kind, clip, fn
        self.observer = None

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "relu":
            y = F.relu(x)
        elif self.kind == "clip":
            y = x.clamp(0.0, self.clip)
        elif self.kind in ("softlif", "qcfs"):
            y = self.fn(x)
        elif self.kind == "plif":
            v0 = self.fn.v_reset or 0.0
            y = (v0 + torch.sigmoid(self.fn.w) * x >= self.fn.threshold).to(x.dtype)
        elif self.kind == "tssl":
            y = (x >= self.fn.threshold).to(x.dtype) / self.fn.tau_s
        else:
            y = x
        if self.observer is not None:
            self.observer.update(y)
        return y

    def extra_repr(self) -> str:
        return self.kind + (f", clip={self.clip}" if self.clip is not None else "")


def _is_softlif(m: nn.Module) -> bool:
    return type(m).__name__ == "SoftLIF" and hasattr(m, "tau_rc") and hasattr(m, "amplitude")


def _is_qcfs(m: nn.Module) -> bool:
    return type(m).__name__ == "QCFS" and hasattr(m, "levels") and hasattr(m, "threshold")


def _is_plif(m: nn.Module) -> bool:
    from zoo.spiking.neuron import PLIFNode

    return isinstance(m, PLIFNode)


def _is_tssl(m: nn.Module) -> bool:
    from zoo.spiking.neuron import TSSLNode

    return isinstance(m, TSSLNode)


def _is_trained_act(m: nn.Module) -> bool:
    """An activation with parameters of its own, kept whole as an ActPoint's ``fn``."""
    return _is_softlif(m) or _is_qcfs(m) or _is_plif(m) or _is_tssl(m)


def _act_from_module(m: nn.Module) -> ActPoint | None:
    if isinstance(m, nn.ReLU):
        return ActPoint("relu")
    if isinstance(m, nn.ReLU6):
        return ActPoint("clip", 6.0)
    if isinstance(m, nn.Hardtanh) and m.min_val == 0.0:
        return ActPoint("clip", float(m.max_val))
    if _is_softlif(m):
        return ActPoint("softlif", fn=m)
    if _is_qcfs(m):
        return ActPoint("qcfs", fn=m)
    if _is_plif(m):
        return ActPoint("plif", fn=m)
    if _is_tssl(m):
        return ActPoint("tssl", fn=m)
    return None


# ops allowed in a canonical graph ------------------------------------------------------------------------
SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)
LINEAR_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.MaxPool2d)
REMOVABLE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
ADD_FUNCS = {operator.add, operator.iadd, torch.add}
CAT_FUNCS = {torch.cat, torch.concat}
STRUCT_FUNCS = {operator.getitem, getattr, torch.flatten, F.adaptive_avg_pool2d, F.avg_pool2d, torch.mean,
                torch.reshape}
STRUCT_METHODS = {"flatten", "view", "reshape", "size", "contiguous", "mean", "add", "add_", "squeeze", "unsqueeze",
                  "dim"}
RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
CLAMP_FUNCS = {torch.clamp, torch.clip, torch.clamp_min}
DROPOUT_FUNCS = {F.dropout, F.dropout1d, F.dropout2d}


def supported_ops() -> str:
    mods = [c.__name__ for c in SYNAPTIC + LINEAR_MODULES + REMOVABLE] + ["ReLU", "ReLU6", "Hardtanh(0, c)",
                                                                          "SoftLIF", "QCFS", "PLIFNode", "TSSLNode",
                                                                          "timm BatchNormAct2d"]
    funcs = ["relu", "relu6", "hardtanh(0, c)", "clamp(min=0)", "add/+", "cat", "flatten/view/reshape",
             "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "mean", "dropout", "multiplication by a constant"]
    return "modules: " + ", ".join(mods) + "; functions/methods: " + ", ".join(funcs)


def _module_path(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0] if isinstance(list(stack.values())[-1], tuple) else list(stack)[-1])
    return "<top level>"


def _fail(node: fx.Node, what: str) -> ConversionError:
    return ConversionError(
        f"cannot convert node {node.name!r} ({what}) at module path {_module_path(node)!r}: not a supported "
        f"operation for rate-coded SNNs. Supported: {supported_ops()}.")


# ---------------------------------------------------------------------------------------------- tracing
class ZooTracer(fx.Tracer):
    """torch.fx tracer that keeps timm's untraceable modules (e.g. VGG's ConvMlp) as leaves."""

    def __init__(self) -> None:
        try:
            from timm.layers import get_notrace_functions, get_notrace_modules

            self._leaves = tuple(get_notrace_modules())
            autowrap = tuple(get_notrace_functions())
        except Exception:  # timm missing or API change: plain tracing
            self._leaves, autowrap = (), ()
        super().__init__(autowrap_functions=autowrap)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, ActPoint) or _is_trained_act(m):
            return True
        if self._leaves and isinstance(m, self._leaves):
            return True
        return super().is_leaf_module(m, qualname)


def _split_norm_act(model: nn.Module) -> None:
    """Replace timm's fused BatchNormAct2d (BN + drop + act in one leaf) with Sequential(BN, act)."""
    try:
        from timm.layers import BatchNormAct2d
    except Exception:
        return
    for name, m in list(model.named_modules()):
        if isinstance(m, BatchNormAct2d):
            bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            bn.load_state_dict({k: v for k, v in m.state_dict().items() if k in bn.state_dict()})
            seq = nn.Sequential(bn, copy.deepcopy(m.act)).train(m.training)
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], seq)


def trace(model: nn.Module) -> fx.GraphModule:
    tracer = ZooTracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(
            f"torch.fx could not trace {type(model).__name__}: {err}. Models must be traceable with "
            "torch.fx (no data-dependent control flow outside timm's leaf modules).") from err
    for node in list(graph.nodes):  # fx also records unused reads of a leaf's parameters (QCFS's threshold)
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


# -------------------------------------------------------------------------------------------- rewriting
def _const(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _kw(node: fx.Node, name: str, pos: int, default=None):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _clamp_act(node: fx.Node) -> ActPoint | None:
    lo = _kw(node, "min", 1)
    hi = _kw(node, "max", 2)
    if node.target is torch.clamp_min or (node.op == "call_method" and node.target in ("clamp_min", "clamp_min_")):
        lo, hi = _kw(node, "min", 1), None
    if lo == 0 and hi is None:
        return ActPoint("relu")
    if lo == 0 and _const(hi) and hi > 0:
        return ActPoint("clip", float(hi))
    return None


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(mods.get(node.target), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        layer, bn = mods[prev.target], mods[node.target]
        if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        _set_module(gm, prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent = root.get_submodule(path.rsplit(".", 1)[0]) if "." in path else root
    setattr(parent, path.rsplit(".", 1)[-1], module)


def _unique_name(gm: nn.Module, base: str) -> str:
    names = {n for n, _ in gm.named_modules()}
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


def _convert_leaf(gm: fx.GraphModule, node: fx.Node, mod: nn.Module) -> None:
    """A leaf module we do not trace through (timm ConvMlp, ...): convert its activations in place."""
    for name, child in list(mod.named_modules()):
        if child is mod or len(list(child.children())) and not _is_trained_act(child):
            continue
        act = _act_from_module(child)
        if act is not None:
            _set_module(mod, name, act)
        elif not isinstance(child, SYNAPTIC + LINEAR_MODULES + REMOVABLE):
            raise _fail(node, f"{type(child).__name__} inside leaf module {type(mod).__name__} at '{name}'")


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, suffix: str) -> None:
    """Replace a function or method call ``node`` by a call of ``module`` (a new submodule) on its first input."""
    name = _unique_name(gm, f"{node.name}_{suffix}")
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _canon_module(gm: fx.GraphModule, node: fx.Node, used_targets: dict[str, int]) -> None:
    """A module call: its activation becomes an :class:`ActPoint` (a new one for each further call of the same
    module), removable modules go, nested modules are flattened, unknown ones are refused."""
    mod = gm.get_submodule(node.target)
    act = _act_from_module(mod)
    if act is None:
        if isinstance(mod, REMOVABLE):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif isinstance(mod, SYNAPTIC + LINEAR_MODULES):
            pass
        elif isinstance(mod, nn.Sequential) or list(mod.children()):
            _convert_leaf(gm, node, mod)
        else:
            raise _fail(node, f"module {type(mod).__name__}")
        return
    k = used_targets.get(node.target, 0)
    used_targets[node.target] = k + 1
    if k == 0:
        _set_module(gm, node.target, act)
    else:  # the same activation module called again: a new layer of neurons
        name = _unique_name(gm, f"{node.target}_{k}")
        _set_module(gm, name, act)
        node.target = name


def _canon_function(gm: fx.GraphModule, node: fx.Node) -> ActPoint | None:
    """A function call: the activation it computes (None: none, or the node was handled in place)."""
    f, graph = node.target, gm.graph
    if f in RELU_FUNCS:
        return ActPoint("relu")
    if f is F.relu6:
        return ActPoint("clip", 6.0)
    if f is F.hardtanh and _kw(node, "min_val", 1, -1.0) == 0:
        return ActPoint("clip", float(_kw(node, "max_val", 2, 1.0)))
    if f in CLAMP_FUNCS:
        act = _clamp_act(node)
        if act is None:
            raise _fail(node, "clamp with a lower bound other than 0")
        return act
    if f in DROPOUT_FUNCS:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        return None
    if f is F.max_pool2d:
        pool = nn.MaxPool2d(_kw(node, "kernel_size", 1), _kw(node, "stride", 2), _kw(node, "padding", 3, 0),
                            _kw(node, "dilation", 4, 1), ceil_mode=_kw(node, "ceil_mode", 5, False))
        _replace_with_module(gm, node, pool, "pool")
        return None
    if f in ADD_FUNCS or f in CAT_FUNCS or f in STRUCT_FUNCS:
        return None
    if f in (operator.mul, torch.mul, operator.truediv) and any(_const(a) for a in node.args):
        return None
    raise _fail(node, f"function {getattr(f, '__name__', f)}")


def _canon_method(node: fx.Node) -> ActPoint | None:
    """A method call: the activation it computes, None for structural and constant-scaling methods."""
    m = node.target
    if m in ("relu", "relu_"):
        return ActPoint("relu")
    if m in ("clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"):
        act = _clamp_act(node)
        if act is None:
            raise _fail(node, f"method {m} with a lower bound other than 0")
        return act
    if m in STRUCT_METHODS or (m in ("mul", "mul_", "div", "div_") and _const(node.args[1])):
        return None
    raise _fail(node, f"method .{m}()")


def _add_output_probe(gm: fx.GraphModule) -> None:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(out.args[0], fx.Node):
        raise ConversionError("the model must return a single tensor of class scores")
    gm.add_submodule("output_probe", ActPoint("output"))
    with gm.graph.inserting_before(out):
        probe = gm.graph.call_module("output_probe", (out.args[0],))
    out.args = (probe,)


def canonicalize(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` (a copy, in eval mode) into a canonical graph; see the module docstring."""
    model = copy.deepcopy(model).eval()
    _split_norm_act(model)
    gm = trace(model)
    _fold_batchnorm(gm)
    graph = gm.graph
    used_targets: dict[str, int] = {}
    for node in list(graph.nodes):
        if node.op == "call_module":
            _canon_module(gm, node, used_targets)
            continue
        if node.op == "call_function":
            act = _canon_function(gm, node)
        elif node.op == "call_method":
            act = _canon_method(node)
        else:  # placeholder, output, get_attr
            continue
        if act is not None:
            _replace_with_module(gm, node, act, "act")
    _add_output_probe(gm)
    graph.eliminate_dead_code()
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def act_points(gm: nn.Module) -> dict[str, ActPoint]:
    """ActPoints by module path, in execution order for traced graphs (the output probe last)."""
    if isinstance(gm, fx.GraphModule):
        order = []
        for node in gm.graph.nodes:
            if node.op == "call_module":
                m = gm.get_submodule(node.target)
                if isinstance(m, ActPoint):
                    order.append((node.target, m))
                else:
                    order += [(f"{node.target}.{n}", c) for n, c in m.named_modules() if isinstance(c, ActPoint)]
        return dict(order)
    return {n: m for n, m in gm.named_modules() if isinstance(m, ActPoint)}


__all__ = ["ActPoint", "ConversionError", "canonicalize", "act_points", "trace", "supported_ops", "ZooTracer"]


def analog_fed(gm: fx.GraphModule, is_barrier) -> set[str]:
    """Names of synaptic (Conv/Linear) nodes whose input comes from the network input without passing a
    barrier (an activation / neuron): in an SNN with analog input they compute MACs at every step."""
    reach: set[fx.Node] = set()
    out: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            reach.add(node)
            continue
        if node.op != "call_module" or not is_barrier(node):
            if any(a in reach for a in node.all_input_nodes):
                if node.op == "call_module" and isinstance(gm.get_submodule(node.target), SYNAPTIC):
                    out.add(node.name)
                reach.add(node)
    return out
