"""SNN checkpoints: one safetensors file per converted network, self-describing.

The file holds the SNN's tensors (weights, thresholds, edge scales) and, in the safetensors metadata under
``"snn_zoo"``, a JSON config: format version, the timm architecture and its kwargs, the input shape, the
resolved recipe and the size of every threshold. Loading rebuilds the network's structure from the
architecture and recipe, then loads the tensors strictly — no pickle anywhere.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from zoo.spiking.network import SpikingNetwork
from zoo.utils import atomic_path

log = logging.getLogger(__name__)

FORMAT = "snn-zoo-snn/1"
META_KEY = "snn_zoo"


class CheckpointError(ValueError):
    """The file is not a valid snn-zoo SNN checkpoint (the message says why)."""


def save_snn(snn: SpikingNetwork, path: str | Path, *, dtype: torch.dtype | None = None,
             extra: dict[str, Any] | None = None, dtype_fallback: torch.dtype | None = None) -> Path:
    """Write ``snn`` to ``path`` atomically. ``dtype=torch.float16`` halves the size (float tensors only).
    Values that overflow ``dtype`` are an error, or, with ``dtype_fallback`` (e.g. float32), the whole file is
    stored in that dtype instead, with a warning; the checkpoint's ``dtype`` field says which was stored.

    ``snn.config`` must name the timm architecture (``arch``, ``arch_kwargs``) so the file can be loaded.
    """
    cfg = dict(snn.config)
    cfg.update(extra or {})
    if "arch" not in cfg:
        raise CheckpointError("snn.config has no 'arch': convert with config={'arch': <timm name>, "
                              "'arch_kwargs': {...}} so the checkpoint can be rebuilt")
    cfg["format"] = FORMAT
    cfg["dtype"] = str(dtype or torch.float32).replace("torch.", "")
    tensors, bad = {}, []
    for k, v in snn.state_dict().items():
        v = v.detach().cpu().contiguous()
        if v.is_floating_point():
            if not bool(torch.isfinite(v).all()):
                raise CheckpointError(f"{path}: tensor {k!r} holds inf or NaN; nothing was written. The conversion "
                                      "that produced it is broken (check its thresholds and calibration data)")
            if dtype is not None:
                cast = v.to(dtype)
                if not bool(torch.isfinite(cast).all()):
                    bad.append(f"{k} (max |x| = {float(v.abs().max()):.4g})")
                v = cast
        tensors[k] = v
    if bad and dtype_fallback is not None and dtype_fallback != dtype:
        log.warning("%s: %s overflow %s; stored in %s instead", path, ", ".join(bad),
                    str(dtype).replace("torch.", ""), str(dtype_fallback).replace("torch.", ""))
        return save_snn(snn, path, dtype=dtype_fallback, extra=extra)
    if bad:
        raise CheckpointError(
            f"{path}: {', '.join(bad)} overflow {str(dtype).replace('torch.', '')}; nothing was written. Store "
            "float32 (the zoo's `dtype` in params.yaml, or save_snn(dtype=None)), or convert in the weight form "
            "(`form: weight`), where thresholds are 1 and weights carry ratios of thresholds")
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(cfg, sort_keys=True, default=str)})
    return Path(path)


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: SNN checkpoints are .safetensors files (nothing else is ever loaded)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    if META_KEY not in meta:
        raise CheckpointError(f"{path}: no '{META_KEY}' metadata; not written by zoo.serialization.save_snn")
    cfg = json.loads(meta[META_KEY])
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {cfg.get('format')!r}, this snn-zoo reads {FORMAT!r}")
    return cfg


def load_snn(path: str | Path, device: str | torch.device = "cpu") -> SpikingNetwork:
    """Rebuild and load the SNN saved at ``path`` (float32, eval mode)."""
    import timm

    import zoo.models  # noqa: F401  (registers the zoo's architectures with timm)
    from zoo.conversion.converter import build_snn
    from zoo.conversion.graph import canonicalize
    from zoo.conversion.variants import make_recipe

    cfg = read_config(path)
    model = timm.create_model(cfg["arch"], **cfg.get("arch_kwargs", {}))
    canonical = canonicalize(model)
    thresholds = {n: torch.ones(k) for n, k in cfg["threshold_numel"].items()}
    snn = build_snn(canonical, thresholds, make_recipe(cfg["recipe"]), input_shape=tuple(cfg["input_shape"]),
                    config=cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        snn.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: tensors do not match the rebuilt network ({err})") from err
    return snn.eval().to(device)


__all__ = ["save_snn", "load_snn", "read_config", "CheckpointError"]
