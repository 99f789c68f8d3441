"""Spiking models to and from other runtimes.

* ``format="onnx"`` (:mod:`zoo.interchange.onnx`): one timestep as an ONNX graph with explicit state, looped T
  times by onnxruntime (:func:`~zoo.interchange.onnx.run_snn_onnx`);
* ``format="nir"`` (:mod:`zoo.interchange.nir`): the Neuromorphic Intermediate Representation read by snnTorch,
  Norse, Sinabs, Rockpool, Lava-DL and neuromorphic hardware; :func:`~zoo.interchange.nir.load_nir` imports it
  back, and :mod:`zoo.interchange.nir_snntorch` runs it in snnTorch.

Example::

    from zoo.interchange import export_snn
    export_snn("diehl-convnet-mnist", "convnet.nir")        # a published model, its default variant
    export_snn("models/snn/r20.safetensors", "r20.onnx")    # any converted checkpoint
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

#: the formats :func:`export_snn` writes, with their file suffixes
SNN_FORMATS = {"onnx": ".onnx", "nir": ".nir"}


def resolve_snn(model: nn.Module | str | Path, variant: str | None = None) -> nn.Module:
    """A network, a checkpoint (``.safetensors``) or a published model's name (with ``variant``: one of its
    variants, default its default) as a loaded network."""
    if not isinstance(model, (str, Path)):
        return model
    source = str(model)
    if source.endswith(".safetensors"):
        if variant is not None:
            raise ValueError("variant names a published model's variant; a checkpoint file is one variant")
        from zoo.serialization import load_snn

        return load_snn(source)
    from zoo.hub import load

    return load(source, variant)


def snn_format(path: str | Path, format: str | None = None) -> str:
    """The export format for ``path``: ``format`` if given, else the one its suffix names (:data:`SNN_FORMATS`);
    ``ValueError`` naming the fix for an unknown format or a suffix that does not match it."""
    path = Path(path)
    if format is None:
        format = next((f for f, suffix in SNN_FORMATS.items() if path.suffix == suffix), None)
        if format is None:
            raise ValueError(f"{path}: name a .onnx or .nir file, or choose a format: {', '.join(SNN_FORMATS)}")
    if format not in SNN_FORMATS:
        raise ValueError(f"format {format!r} is not supported; choose one of {', '.join(SNN_FORMATS)}")
    suffix = SNN_FORMATS[format]
    if path.suffix != suffix:
        raise ValueError(f"{path}: a {format.upper()} file ends in {suffix}, e.g. {path.with_suffix(suffix)}")
    return format


def export_snn(model: nn.Module | str | Path, path: str | Path, *, format: str | None = None,
               variant: str | None = None) -> Path:
    """Export a spiking model (a network, a checkpoint or a published model's name, see :func:`resolve_snn`) to
    ``path`` for another runtime. ``format`` (default: from the suffix of ``path``) is one of
    :data:`SNN_FORMATS`. What a format cannot express is refused with ``NotImplementedError`` naming the layer;
    nothing is written then."""
    path = Path(path)
    format = snn_format(path, format)
    snn = resolve_snn(model, variant)
    shape = (snn.config or {}).get("input_shape")
    if not shape:
        raise ValueError("the network's config has no input_shape; convert it with zoo.convert, which records it")
    if format == "nir":
        from zoo.interchange.nir import export_nir

        return export_nir(snn, path)
    from zoo.interchange.onnx import export_snn_step

    return export_snn_step(snn, torch.zeros((1, *shape)), path)


__all__ = ["export_snn", "resolve_snn", "snn_format", "SNN_FORMATS"]
