"""The MLflow runs of the evaluations: logging one (from the files the evaluate stage wrote) and tagging runs
with the dvc.lock entry of the convert stage that made their checkpoint. Used by evaluate and package."""
from __future__ import annotations

import json
from pathlib import Path

from zoo.config import Params
from zoo.stages.common import eval_dir, read_meta, snn_file, tracking_uri
from zoo.utils import sha256_file


def log_evaluation(p: Params, zoo: str, model: str, variant: str, restored: bool = False,
                   snn_sha256: str | None = None) -> str:
    """Log the evaluate stage's result for one variant (``models/eval/<zoo>/<model>/<variant>.json``, its table
    and plots, the checkpoint and its recipe) as an MLflow child run; returns the run id. ``restored``: the
    result was committed by an earlier ``dvc repro`` and this store has no run of it (a fresh clone).
    ``snn_sha256``: the checkpoint's sha256, when the caller has it (else it is hashed here)."""
    from zoo.tracking import log_variant

    m = p.models[model]
    ckpt, out = snn_file(zoo, model, variant), eval_dir(zoo, model)
    metrics = json.loads((out / f"{variant}.json").read_text())
    plots = out / f"{variant}-plots"
    artifacts = [out / f"{variant}.json", out / f"{variant}.csv"] + [
        plots / f"{variant}-{kind}" for kind in ("accuracy.png", "correlation.json", "correlation.png")
        if (plots / f"{variant}-{kind}").is_file()]
    recipe = json.loads(ckpt.with_suffix(".json").read_text())["recipe"]
    tags = {"dvc_stage": f"evaluate-{zoo}@{model}-{variant}", "snn_sha256": snn_sha256 or sha256_file(ckpt),
            "dvc_lock_md5": lock_md5(f"convert-{zoo}@{model}-{variant}", ckpt), "arch": m.arch, "dataset": m.dataset}
    if restored:
        tags["zoo_restored_from"] = str(out / f"{variant}.json")
    return log_variant(tracking_uri(p), p.tracking.experiment, model=model, variant=variant,
                       ann_sha256=read_meta(model).get("model_sha256", "unknown"), recipe=recipe, result=metrics,
                       artifacts=artifacts, checkpoint=ckpt, tags=tags,
                       parent_tags={"arch": m.arch, "dataset": m.dataset, "zoo": zoo})


def lock_md5(stage: str, out: Path | None = None) -> str:
    """md5 of ``stage``'s entry in dvc.lock, or "none" when it does not describe the current files.

    DVC writes a stage's entry when the stage completes, so under ``dvc repro`` the convert stage that produced
    the checkpoint being evaluated is there. A stage run directly (``python pipeline/convert.py``) leaves the
    entry of the previous DVC run in place; with ``out`` given, the entry counts only if its recorded md5 of
    ``out`` is the file's md5 now, so such a stale entry gives "none" (the package stage fills the tag in later,
    see :func:`link_runs_to_lock`).
    """
    import hashlib

    import yaml

    try:
        entry = (yaml.safe_load(Path("dvc.lock").read_text()) or {}).get("stages", {}).get(stage)
    except (OSError, yaml.YAMLError):
        entry = None
    if entry is None:
        return "none"
    if out is not None:
        recorded = {o.get("path"): o.get("md5") for o in entry.get("outs", [])}.get(Path(out).as_posix())
        if recorded is None or not Path(out).is_file() or recorded != hashlib.md5(Path(out).read_bytes()).hexdigest():
            return "none"
    return hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def link_runs_to_lock(p: Params, zoo: str, model: str) -> int:
    """Tag each variant's MLflow run with the dvc.lock entry of the convert stage that made its checkpoint.

    Evaluate stages run outside ``dvc repro`` (then ``dvc commit``-ed) log ``dvc_lock_md5=none``; by the time
    ``package`` runs the lock is current. Runs are matched by model, variant and the checkpoint's sha256, so a
    run of another checkpoint is never relabelled. Returns the number of runs tagged.
    """
    from zoo.tracking import set_run_tags

    n = 0
    for variant in p.zoos[zoo].variants:
        ckpt = snn_file(zoo, model, variant)
        md5 = lock_md5(f"convert-{zoo}@{model}-{variant}", ckpt)
        if md5 != "none":
            n += set_run_tags(tracking_uri(p), p.tracking.experiment,
                              {"zoo_model": model, "zoo_variant": variant, "snn_sha256": sha256_file(ckpt)},
                              {"dvc_lock_md5": md5})
    return n
