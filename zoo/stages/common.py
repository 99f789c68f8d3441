"""What every stage shares: where the stages write (see :mod:`zoo.stages`), a trained model's metadata and
the MLflow tracking URI. Every stage of dvc.yaml depends on this file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.config import Params

DATA = Path("data/prepared")
BUILD = Path("models/build")


def data_dir(dataset: str) -> Path:
    return DATA / dataset


def train_dir(model: str) -> Path:
    return BUILD / model / "train"


def onnx_dir(model: str) -> Path:
    return BUILD / model / "onnx"


def calib_file(model: str) -> Path:
    return BUILD / model / "calibration.safetensors"


def snn_file(zoo: str, model: str, variant: str) -> Path:
    return Path("models/snn") / zoo / model / f"{variant}.safetensors"


def eval_dir(zoo: str, model: str) -> Path:
    return Path("models/eval") / zoo / model


def read_meta(model: str) -> dict[str, Any]:
    path = train_dir(model) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `dvc repro train@{model}` first")
    return json.loads(path.read_text())


def tracking_uri(p: Params) -> str:
    from zoo.tracking import resolve_uri

    return resolve_uri(p.tracking.uri)
