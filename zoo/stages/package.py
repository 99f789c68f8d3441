"""Stage ``package-<zoo>@<model>``: one model's folder of a published zoo (its checkpoints, ``entry.json``,
model card and plot), its champion registered in MLflow. ``publish-<zoo>`` joins the folders."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from zoo.config import Params
from zoo.stages.common import eval_dir, read_meta, snn_file, tracking_uri
from zoo.stages.runs import link_runs_to_lock, log_evaluation
from zoo.utils import atomic_path, sha256_file, write_json

log = logging.getLogger("zoo.stages")

ENTRY = "entry.json"  # a packaged model's index entry, beside its checkpoints and card


def package_dir(p: Params, zoo: str, model: str) -> Path:
    """``<zoos.<zoo>.dir>/<model>``: the published folder of one model (checkpoints, card, plot, entry)."""
    return Path(p.zoos[zoo].dir) / model


def published_variants(p: Params, zoo: str, model: str, default: str) -> list[str]:
    """The variants of ``model`` that get a checkpoint in git: all, or only ``default`` for the zoo's
    ``default_only`` models. Raises ValueError, before anything is written, if they alone exceed ``max_mib``."""
    z = p.zoos[zoo]
    variants = [v for v in z.variants if model not in z.default_only or v == default]
    total = sum(snn_file(zoo, model, v).stat().st_size for v in variants)
    if total > z.max_mib * 2**20:
        raise too_large(p, zoo, model, total, model)
    return variants


def too_large(p: Params, zoo: str, what: str, total: int, fix: str, listed: str = "") -> ValueError:
    """The error of a package or publish whose checkpoints exceed ``zoos.<zoo>.max_mib``; ``fix`` names the
    models to move to ``default_only``, ``listed`` the sizes per model."""
    z = p.zoos[zoo]
    listed = f" ({listed})" if listed else ""
    return ValueError(f"{what}: its checkpoints take {total / 2**20:.1f} MiB, more than zoos.{zoo}.max_mib = "
                      f"{z.max_mib:g}{listed}. Fix: add {fix} to zoos.{zoo}.default_only (only the default variant is "
                      "published), or raise max_mib if the files need not live in git")


def package(p: Params, zoo: str, model: str) -> None:
    """Package one model of a zoo into ``<zoos.<zoo>.dir>/<model>/``: its published SNN checkpoints
    (``<variant>.safetensors``), ``entry.json`` (its index entry), the model card ``README.md`` and
    ``accuracy.png``; register its default variant in the MLflow model registry. ``publish-<zoo>`` joins the
    entries into the zoo's index, so one model is republished without the build outputs of the others."""
    from zoo import cards, hub
    from zoo.tracking import git_commit, latest_run, register_champion

    z, m = p.zoos[zoo], p.models[model]
    out = package_dir(p, zoo, model)
    T = str(p.tracking.champion_at_T)
    evals = {v: json.loads((eval_dir(zoo, model) / f"{v}.json").read_text()) for v in z.variants}
    # the default variant: the most accurate at champion_at_T (the first listed on ties)
    default = max(z.variants, key=lambda v: (evals[v]["accuracy"].get(T, 0.0), -z.variants.index(v)))
    published = published_variants(p, zoo, model, default)
    meta = read_meta(model)
    entry: dict[str, Any] = {
        "name": model, "family": m.family, "arch": m.arch, "arch_kwargs": meta["arch_kwargs"],
        "dataset": m.dataset, "input_shape": meta.get("input_shape"), "ann_accuracy": meta["test_accuracy"],
        "description": m.description, "git_commit": git_commit(), "params": m.model_dump(), "variants": {},
    }
    ds = meta.get("dataset") or {}
    if ds.get("normalization"):  # for zoo.test_data: the test split normalized as in training
        entry["input"] = {"source": ds.get("source", p.datasets[m.dataset].source), **ds["normalization"]}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors"):  # DVC empties the folder first; a direct run may leave old files
        if stale.stem not in published:
            stale.unlink()
    for variant in z.variants:
        ev = evals[variant]
        src = snn_file(zoo, model, variant)
        recipe = json.loads(src.with_suffix(".json").read_text())["recipe"]
        var = entry["variants"][variant] = {
            "accuracy": ev["accuracy"], "energy_ratio": ev["energy_ratio"][max(ev["energy_ratio"], key=int)],
            "energy_ratio_per_T": ev["energy_ratio"],
            "spikes_per_image": ev["spikes_per_image"][max(ev["spikes_per_image"], key=int)],
            "synops_per_image": ev["synops_per_image"][max(ev["synops_per_image"], key=int)],
            "test_images": ev["images"], "recipe": recipe}
        if ev.get("draws"):  # a stochastic SNN: which draws made these figures (zoo.spiking.layer.DRAWS)
            var["draws"] = ev["draws"]
        if variant in published:
            dst = out / f"{variant}.safetensors"
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            var.update(file=f"{model}/{dst.name}", size=dst.stat().st_size, sha256=sha256_file(dst))
        else:
            var["rebuild"] = f"dvc repro convert-{zoo}@{model}-{variant}"
    entry["default_variant"] = default
    ev = evals[default]
    entry["evaluation"] = {"test_images": ev["images"], "test_split_images": ev.get("test_split_images"),
                           "ann_accuracy": ev["ann_accuracy"]}
    uri = tracking_uri(p)
    for variant in z.variants:  # dvc repro skipped evaluations committed with the lock: log them from their files
        sha = sha256_file(snn_file(zoo, model, variant))
        if latest_run(uri, p.tracking.experiment, {"zoo_model": model, "zoo_variant": variant, "snn_sha256": sha}) is None:
            log_evaluation(p, zoo, model, variant, restored=True, snn_sha256=sha)
            log.info("%s/%s: no MLflow run of this checkpoint here; logged its committed evaluation", model, variant)
    if p.publish.registry:  # the champion is the index's default variant: the run of this very checkpoint
        run = latest_run(uri, p.tracking.experiment, {"zoo_model": model, "zoo_variant": default,
                                                      "snn_sha256": entry["variants"][default]["sha256"]})
        if run is not None:
            version = register_champion(uri, run.info.run_id, f"snn-zoo-{model}")
            entry["mlflow"] = {"registered_model": f"snn-zoo-{model}", "version": version, "alias": "champion",
                               "variant": run.data.tags.get("zoo_variant")}
    hub.validate_index({"schema": hub.SCHEMA, "models": {model: entry}}, str(out / ENTRY))
    write_json(out / ENTRY, entry)
    cards.render_card(entry, out)
    linked = link_runs_to_lock(p, zoo, model)
    if linked:
        log.info("tagged %d MLflow runs with their convert stage's dvc.lock md5", linked)
    log.info("packaged %s (%d of %d variants with a checkpoint) in %s", model, len(published), len(z.variants), out)


def read_package(p: Params, zoo: str, model: str) -> dict[str, Any]:
    """The entry of a packaged model, checked against its files (size and sha256 of every checkpoint)."""
    from zoo import hub

    d = package_dir(p, zoo, model)
    path = d / ENTRY
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `dvc repro package-{zoo}@{model}`")
    entry = json.loads(path.read_text())
    hub.validate_index({"schema": hub.SCHEMA, "models": {model: entry}}, str(path))
    for v, var in entry["variants"].items():
        if "file" not in var:
            continue
        f = Path(p.zoos[zoo].dir) / var["file"]
        if not f.is_file() or f.stat().st_size != var["size"] or sha256_file(f) != var["sha256"]:
            raise ValueError(f"{f} does not match {path} (variant {v!r}: size {var['size']}, sha256 "
                             f"{var['sha256']}): run `dvc repro package-{zoo}@{model}` again")
    return entry
