"""Export to ONNX and check that onnxruntime computes what PyTorch computes.

* :func:`export_onnx` writes the ANN (eval mode) to one self-contained ``.onnx`` file, with a free batch size,
  atomically, and validates it with ``onnx.checker``. It uses the dynamo exporter (``torch.export``) and falls
  back to the legacy TorchScript exporter if that fails; which one was used is stored in the file's metadata
  (``zoo.exporter``), read back by :func:`onnx_info`. The exporter's per-node Python stack traces are removed:
  they hold absolute source paths, so the same model exported from two checkouts gave two different files.
* :func:`check_parity` runs the file in onnxruntime (CPU) and compares it with the PyTorch model;
  :func:`assert_parity` raises :class:`ParityError` when they differ beyond the tolerance.

Spiking networks are exported by :mod:`zoo.interchange` (ONNX one-timestep graphs and NIR).

Example::

    from zoo.export import export_onnx, assert_parity
    path = export_onnx(model, torch.randn(1, 3, 32, 32), "resnet20.onnx")
    report = assert_parity(model, path, torch.randn(7, 3, 32, 32))   # {"max_abs_diff": ..., "passed": True}
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from zoo.utils import atomic_path

EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_TORCHSCRIPT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(RuntimeError):
    """The model could not be exported to ONNX (the message carries each exporter's error)."""


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance; ``report`` holds :func:`check_parity`'s dict."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


# ------------------------------------------------------------------------------------------------ export
def _first_line(err: BaseException, limit: int = 300) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def _export_dynamo(model: nn.Module, args: tuple, dest: Path, *, opset: int | None, dynamic: Sequence[bool],
                   input_names: list[str], output_names: list[str]) -> None:
    dyn = None
    if any(dynamic):
        batch = torch.export.Dim("batch", min=1)
        dyn = tuple({0: batch} if d else None for d in dynamic)
    kwargs: dict[str, Any] = dict(dynamo=True, verbose=False, input_names=input_names, output_names=output_names,
                                  dynamic_shapes=dyn, external_data=False, optimize=True)
    if opset is not None:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, **kwargs)
    program.save(str(dest), external_data=False)


def _export_torchscript(model: nn.Module, args: tuple, dest: Path, *, opset: int | None, dynamic: Sequence[bool],
                        input_names: list[str], output_names: list[str], dynamic_outputs: Sequence[bool]) -> None:
    axes = {n: {0: "batch"} for n, d in zip(input_names, dynamic) if d}
    axes.update({n: {0: "batch"} for n, d in zip(output_names, dynamic_outputs) if d})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, args, str(dest), dynamo=False, opset_version=opset or DEFAULT_TORCHSCRIPT_OPSET,
                          input_names=input_names, output_names=output_names, dynamic_axes=axes or None,
                          do_constant_folding=True)


# Per-node metadata the dynamo exporter writes that names this machine, not the model: Python stack traces with
# absolute source paths and line numbers. Left in, the file leaks the user's directories into a published
# artifact and its hash changes with the checkout's location or any edit that shifts a line (so `dvc repro`
# in a fresh clone rewrote every model.onnx); the other node metadata (module names, fx nodes) stays.
_MACHINE_METADATA = ("pkg.torch.onnx.stack_trace",)


def _strip_stack_traces(proto) -> None:
    """Remove :data:`_MACHINE_METADATA` from every node, in the main graph, its subgraphs and local functions."""
    def graphs(g):
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.HasField("g"):
                    yield from graphs(a.g)
                for sub in a.graphs:
                    yield from graphs(sub)

    nodes = [n for g in graphs(proto.graph) for n in g.node]
    nodes += [n for f in proto.functions for n in f.node]
    for n in nodes:
        keep = [p for p in n.metadata_props if p.key not in _MACHINE_METADATA]
        if len(keep) != len(n.metadata_props):
            del n.metadata_props[:]
            n.metadata_props.extend(keep)


def _export_file(model: nn.Module, args: tuple, path: str | Path, *, opset: int | None, exporter: str,
                 dynamic: Sequence[bool], input_names: list[str], output_names: list[str],
                 dynamic_outputs: Sequence[bool], metadata: dict[str, Any]) -> Path:
    """Export with the chosen exporter (``auto``: dynamo, then TorchScript), embed the weights, add metadata,
    validate with ``onnx.checker`` and move the file into place atomically."""
    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter={exporter!r} is not valid; choose one of {EXPORTERS}")
    path = Path(path)
    with atomic_path(path) as tmp:
        strays = lambda: [p for p in tmp.parent.glob(tmp.name + "*") if p != tmp]  # noqa: E731 (external data)
        errors: list[str] = []
        used = None
        order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
        for name in order:
            try:
                if name == "dynamo":
                    _export_dynamo(model, args, tmp, opset=opset, dynamic=dynamic, input_names=input_names,
                                   output_names=output_names)
                else:
                    _export_torchscript(model, args, tmp, opset=opset, dynamic=dynamic, input_names=input_names,
                                        output_names=output_names, dynamic_outputs=dynamic_outputs)
                used = name
                break
            except Exception as err:  # noqa: BLE001 - try the next exporter, report all
                errors.append(f"{name}: {_first_line(err)}")
                for p in strays():
                    p.unlink(missing_ok=True)
        if used is None:
            raise ExportError(f"could not export {type(model).__name__} to ONNX: " + "; ".join(errors))
        if errors:
            warnings.warn(f"ONNX export fell back to the {used} exporter ({errors[0]})", RuntimeWarning,
                          stacklevel=3)
        try:
            proto = onnx.load(str(tmp), load_external_data=True)  # embeds any external data written beside tmp
        finally:
            for p in strays():
                p.unlink(missing_ok=True)
        meta = {"zoo.exporter": used, "zoo.torch_version": torch.__version__, **metadata}
        if errors:
            meta["zoo.export_fallback_reason"] = errors[0]
        _strip_stack_traces(proto)
        keep = [p for p in proto.metadata_props if p.key not in meta]
        del proto.metadata_props[:]
        proto.metadata_props.extend(keep)
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=str(v))
        onnx.checker.check_model(proto, full_check=True)
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    return path


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int | None = None,
                dynamic_batch: bool = True, exporter: str = "auto") -> Path:
    """Export ``model`` (in eval mode; its mode is restored afterwards) to a single ``.onnx`` file at ``path``.

    ``example`` is one input batch ``[B, ...]``; with ``dynamic_batch`` the batch dimension of the input and the
    output is free (``batch``). ``opset=None`` lets the exporter choose (dynamo: its recommended opset;
    TorchScript: 17). ``exporter``: ``"auto"`` (dynamo, falling back to TorchScript with a ``RuntimeWarning``),
    ``"dynamo"`` or ``"torchscript"``. The weights are embedded (no external ``.data`` files), the file is
    checked with ``onnx.checker.check_model(full_check=True)`` and replaces ``path`` atomically; the exporter
    used, the example's batch size and whether the batch is dynamic are stored as metadata (see
    :func:`onnx_info`). Raises :class:`ExportError` if no exporter succeeds.
    """
    if not isinstance(example, Tensor):
        raise TypeError(f"example must be a Tensor [B, ...], got {type(example).__name__}")
    was_training = model.training
    model.eval()
    try:
        param = next(iter(model.parameters()), None)
        if param is not None:
            example = example.to(device=param.device, dtype=param.dtype)
        with torch.no_grad():
            return _export_file(
                model, (example,), path, opset=opset, exporter=exporter, dynamic=[dynamic_batch],
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_outputs=[dynamic_batch],
                metadata={"zoo.kind": "ann", "zoo.example_batch": int(example.shape[0]),
                          "zoo.dynamic_batch": int(bool(dynamic_batch)),
                          "zoo.input_shape": list(example.shape[1:])})
    finally:
        model.train(was_training)


def onnx_info(path: str | Path) -> dict[str, Any]:
    """Opset, exporter, example batch, dynamic batch and input/output names of an exported file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    eb = meta.get("zoo.example_batch")
    dyn = meta.get("zoo.dynamic_batch")
    if dyn is None:  # a file not written by export_onnx: look at the first input's batch dim
        dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
        dyn = int(bool(dims) and not dims[0].HasField("dim_value"))
    return {"opset": opset, "exporter": meta.get("zoo.exporter", proto.producer_name or "unknown"),
            "example_batch": int(eb) if eb is not None else None, "dynamic_batch": bool(int(dyn)),
            "inputs": [i.name for i in proto.graph.input], "outputs": [o.name for o in proto.graph.output],
            "metadata": meta}


# ------------------------------------------------------------------------------------------------ parity
def _session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or max(1, torch.get_num_threads()))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _compare(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    got64, ref64 = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(got64 - ref64)
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = diff / np.maximum(np.abs(ref64), np.finfo(np.float32).tiny)
    excess = diff - (atol + rtol * np.abs(ref64))
    worst = np.unravel_index(int(np.argmax(excess)), diff.shape) if diff.size else ()
    if got.ndim >= 2 and got.shape[0] > 0:
        agree = float(np.mean(got.reshape(got.shape[0], -1).argmax(1) == ref.reshape(ref.shape[0], -1).argmax(1)))
    else:
        agree = 1.0
    return {"max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "max_rel_diff": float(rel.max()) if rel.size else 0.0,
            "argmax_agreement": agree, "passed": bool(diff.size == 0 or excess.max() <= 0),
            "worst_index": tuple(int(i) for i in worst),
            "worst_values": (float(got64[worst]), float(ref64[worst])) if diff.size else None}


def check_parity(model: nn.Module, onnx_path: str | Path, inputs: Tensor, *, atol: float = 1e-3,
                 rtol: float = 1e-3) -> dict[str, Any]:
    """Run ``inputs`` through onnxruntime (CPUExecutionProvider) and ``model`` (eval mode, no grad).

    Passes when ``|onnx - torch| <= atol + rtol * |torch|`` everywhere (``numpy.allclose``). If the file has a
    dynamic batch and ``inputs`` has the export example's batch size, one row is appended so that the run uses
    a different batch size than the export (``batch`` reports the size used). Returns ``max_abs_diff``,
    ``max_rel_diff`` (relative to ``|torch|``), ``argmax_agreement`` (fraction of rows with the same top
    class), ``batch``, ``opset``, ``exporter``, ``passed``, plus ``atol``/``rtol``/``worst_index`` and ``error``
    (onnxruntime's message if the run itself failed, e.g. a batch size baked into a reshape).
    """
    info = onnx_info(onnx_path)
    x = inputs.detach()
    if info["dynamic_batch"] and info["example_batch"] is not None and x.shape[0] == info["example_batch"]:
        x = torch.cat([x, x[:1]])
    report: dict[str, Any] = {"batch": int(x.shape[0]), "opset": info["opset"], "exporter": info["exporter"],
                              "atol": atol, "rtol": rtol}
    was_training = model.training
    model.eval()
    try:
        param = next(iter(model.parameters()), None)
        xm = x.to(device=param.device, dtype=param.dtype) if param is not None else x
        with torch.no_grad():
            ref = model(xm)
    finally:
        model.train(was_training)
    ref_np = ref.detach().float().cpu().numpy()
    try:
        sess = _session(onnx_path)
        feed = {sess.get_inputs()[0].name: x.detach().float().cpu().numpy()}
        got = sess.run(None, feed)[0]
    except Exception as err:  # noqa: BLE001 - a failed run is a parity failure, reported
        report.update(max_abs_diff=float("inf"), max_rel_diff=float("inf"), argmax_agreement=0.0, passed=False,
                      error=_first_line(err, 500))
        return report
    if got.shape != ref_np.shape:
        report.update(max_abs_diff=float("inf"), max_rel_diff=float("inf"), argmax_agreement=0.0, passed=False,
                      error=f"output shape {tuple(got.shape)} != PyTorch's {tuple(ref_np.shape)}")
        return report
    report.update(_compare(got, ref_np, atol, rtol))
    return report


def _parity_message(r: dict[str, Any], path: str | Path, what: str = "ONNX model") -> str:
    head = f"{what} {path} does not match PyTorch (exporter {r.get('exporter')}, opset {r.get('opset')}"
    head += f", batch {r.get('batch')}): "
    if r.get("error"):
        return head + f"onnxruntime failed: {r['error']}"
    wv = r.get("worst_values")
    at = f" at index {r.get('worst_index')} (onnx {wv[0]:.6g} vs torch {wv[1]:.6g})" if wv else ""
    return head + (f"max abs diff {r['max_abs_diff']:.3g}{at} exceeds the tolerance atol={r['atol']:g} + "
                   f"rtol={r['rtol']:g}*|torch|; max rel diff {r['max_rel_diff']:.3g}; argmax agreement "
                   f"{r['argmax_agreement']:.1%}")


def assert_parity(model: nn.Module, onnx_path: str | Path, inputs: Tensor, *, atol: float = 1e-3,
                  rtol: float = 1e-3) -> dict[str, Any]:
    """:func:`check_parity`, raising :class:`ParityError` (with the max difference and the tolerance in its
    message) if it fails; returns the report otherwise."""
    report = check_parity(model, onnx_path, inputs, atol=atol, rtol=rtol)
    if not report["passed"]:
        raise ParityError(_parity_message(report, onnx_path), report)
    return report


__all__ = ["export_onnx", "check_parity", "assert_parity", "onnx_info", "ParityError", "ExportError", "EXPORTERS"]
