"""The logic of the DVC stages (dvc.yaml): stage ``<stage>`` is the function of that name in
``zoo/stages/<stage>.py``, which its dvc.yaml entry lists as a dependency (with :mod:`zoo.stages.common`, the
paths every stage shares), so a change to one stage's logic reruns that stage and not the others.
``pipeline/<stage>.py`` only calls :func:`main`.

Layout of what the stages write (DVC outputs):

    data/prepared/<dataset>/                      prepare@<dataset>
    models/build/<model>/train/                   train@<model>: model.safetensors, meta.json, checkpoints/
    models/build/<model>/onnx/                    export@<model>: model.onnx, parity.json
    models/build/<model>/calibration.safetensors  calibrate@<model>
    models/snn/<zoo>/<model>/<variant>.*          convert-<zoo>@<model>-<variant>: .safetensors + .json
    models/eval/<zoo>/<model>/<variant>.*         evaluate-<zoo>@<model>-<variant>: .json, .csv, -plots/
    <zoos.<zoo>.dir>/<model>/                     package-<zoo>@<model>: <variant>.safetensors, entry.json,
                                                  README.md (model card), accuracy.png
    <zoos.<zoo>.dir>/index.json, README.md        publish-<zoo>: the zoo's index and table, from the entries
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time

from zoo.config import ConfigError, load_params
from zoo.utils import setup_logging

log = logging.getLogger("zoo.stages")

#: stage -> number of positional arguments; stage ``s`` runs ``zoo.stages.s.s`` (imported on use)
STAGES = {"prepare": 1, "train": 1, "export": 1, "calibrate": 1, "convert": 2, "evaluate": 2, "package": 2,
          "publish": 1}


def main(stage: str, argv: list[str] | None = None) -> int:
    """Entry point of ``pipeline/<stage>.py``: validate params.yaml, then run the stage."""
    nargs = STAGES[stage]
    module = importlib.import_module(f"zoo.stages.{stage}")
    fn = getattr(module, stage)
    ap = argparse.ArgumentParser(prog=f"pipeline/{stage}.py", description=(module.__doc__ or "").strip() or None)
    names = {"prepare": ["dataset"], "package": ["zoo", "model"], "publish": ["zoo"]}.get(
        stage, ["model", "variant"][:nargs])
    for n in names:
        ap.add_argument(n)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    setup_logging()
    threads = os.environ.get("ZOO_NUM_THREADS")
    if threads:  # tiny models on shared cores run far faster single-threaded
        import torch

        torch.set_num_threads(int(threads))
    try:
        p = load_params(args.params)
        section = {"dataset": p.datasets, "model": p.models, "variant": p.variants, "zoo": p.zoos}
        for n in names:
            value = getattr(args, n)
            if value not in section[n]:
                raise ConfigError(f"unknown {n} {value!r}; params.yaml declares: {', '.join(section[n])}")
        if stage == "package" and args.model not in p.zoos[args.zoo].models:
            raise ConfigError(f"{args.model!r} is not a model of zoo {args.zoo!r}; zoos.{args.zoo}.models: "
                              f"{', '.join(p.zoos[args.zoo].models)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.time()
    fn(p, *[getattr(args, n) for n in names])
    log.info("%s %s done in %.1fs", stage, " ".join(getattr(args, n) for n in names), time.time() - t0)
    if os.environ.get(MODULES_LOG):
        _log_modules(os.environ[MODULES_LOG], stage, [getattr(args, n) for n in names])
    return 0


#: set to a file to have every stage append the snn-zoo modules it imported (one JSON line per run): how
#: tests/test_pipeline.py checks that dvc.yaml lists each stage's code dependencies, and no others
MODULES_LOG = "ZOO_STAGE_MODULES"


def _log_modules(path: str, stage: str, args: list[str]) -> None:
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f and (m.__name__ == "zoo" or m.__name__.startswith("zoo.")):
            files.add(Path(f).resolve().relative_to(root).as_posix())
    with open(path, "a") as fh:
        fh.write(json.dumps({"stage": stage, "args": args, "modules": sorted(files)}) + "\n")


__all__ = ["main", "STAGES"]
