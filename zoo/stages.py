"""The logic of the DVC stages (dvc.yaml); ``pipeline/<stage>.py`` only calls :func:`main`.

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
import csv
import io
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from zoo.config import ConfigError, Params, load_params
from zoo.utils import atomic_path, setup_logging, sha256_file, write_json

log = logging.getLogger("zoo.stages")

DATA = Path("data/prepared")
BUILD = Path("models/build")


# ------------------------------------------------------------------------------------------------ paths
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


def _meta(model: str) -> dict[str, Any]:
    path = train_dir(model) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `dvc repro train@{model}` first")
    return json.loads(path.read_text())


def _tracking_uri(p: Params) -> str:
    from zoo.tracking import resolve_uri

    return resolve_uri(p.tracking.uri)


# ----------------------------------------------------------------------------------------------- stages
def prepare(p: Params, dataset: str) -> None:
    from zoo.data import prepare as prepare_data

    cfg = p.datasets[dataset]
    fp = prepare_data(cfg.source, data_dir(dataset), root=p.data.root, download=p.data.download,
                      calib_size=cfg.calib_size, seed=cfg.seed, image_size=cfg.image_size)
    log.info("prepared %s: %s", dataset, {k: fp.get(k) for k in ("counts", "input_shape") if k in fp})


def train(p: Params, model: str) -> None:
    from zoo.training import train as train_model

    m = p.models[model]
    t = m.train
    meta = train_model(m.arch, m.arch_kwargs, data_dir(m.dataset), train_dir(model), epochs=t.epochs,
                       batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer, weight_decay=t.weight_decay,
                       label_smoothing=t.label_smoothing, seed=t.seed, augment=t.augment,
                       val_fraction=t.val_fraction, accelerator=t.accelerator, devices=t.devices,
                       strategy=t.strategy, num_workers=t.num_workers, channels_last=t.channels_last,
                       precision=t.precision, tracking_uri=_tracking_uri(p),
                       experiment=f"{p.tracking.experiment}-train", run_name=model)
    write_json(BUILD / model / "train.json", {"test_accuracy": meta["test_accuracy"], "epochs": meta.get("epochs")})


def export(p: Params, model: str) -> None:
    import torch

    from zoo.data import PreparedData
    from zoo.export import check_parity, export_onnx
    from zoo.training import load_trained

    m = p.models[model]
    ann = load_trained(train_dir(model))
    test = PreparedData(data_dir(m.dataset)).test
    x = torch.stack([test[i][0] for i in range(min(64, len(test)))])
    out = onnx_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(ann, x[:2], out / "model.onnx")
    report = check_parity(ann, out / "model.onnx", x)
    write_json(out / "parity.json", report)
    if not report["passed"]:
        raise SystemExit(f"ONNX parity check failed for {model}: max |logit difference| "
                         f"{report['max_abs_diff']:.3g} (see {out / 'parity.json'})")


def calibrate(p: Params, model: str) -> None:
    from torch.utils.data import DataLoader

    from zoo.conversion.calibration import calibrate as run_calibration
    from zoo.conversion.graph import canonicalize
    from zoo.data import PreparedData
    from zoo.training import load_trained

    m = p.models[model]
    ann = load_trained(train_dir(model))
    data = PreparedData(data_dir(m.dataset))
    stats = run_calibration(canonicalize(ann), DataLoader(data.calibration, batch_size=256))
    stats.save(calib_file(model))


def convert(p: Params, model: str, variant: str) -> None:
    import torch

    from zoo.conversion.calibration import ActivationStats
    from zoo.conversion.converter import convert as convert_model
    from zoo.data import PreparedData
    from zoo.serialization import read_config, save_snn
    from zoo.training import load_trained

    m = p.models[model]
    zoo = p.zoo_of(model)
    meta = _meta(model)
    ann = load_trained(train_dir(model))
    data = PreparedData(data_dir(m.dataset))
    recipe = p.recipe(variant)
    calib = torch.stack([data.calibration[i][0] for i in range(min(256, len(data.calibration)))])
    config = {"arch": meta["arch"], "arch_kwargs": meta["arch_kwargs"], "model": model, "dataset": m.dataset,
              "classes": data.classes, "preprocess": {"mean": data.mean, "std": data.std},
              "ann_sha256": meta.get("model_sha256")}
    snn = convert_model(ann, calib, recipe, stats=ActivationStats.load(calib_file(model)), config=config,
                        progress=False)
    out = snn_file(zoo, model, variant)
    # a variant whose values overflow the zoo's dtype (model-based bounds in float16) is stored in float32
    save_snn(snn, out, dtype=getattr(torch, p.zoos[zoo].dtype), dtype_fallback=torch.float32)
    thresholds = {n: float(m_.threshold.max()) for n, m_ in snn.neurons().items()}
    write_json(out.with_suffix(".json"), {**snn.config, "dtype": read_config(out)["dtype"],
                                          "max_threshold_per_layer": thresholds,
                                          "checkpoint_sha256": sha256_file(out)})


def evaluate(p: Params, model: str, variant: str) -> None:
    import torch

    from zoo.data import PreparedData
    from zoo.evaluation import eval_subset, evaluate_snn
    from zoo.serialization import load_snn
    from zoo.simulation import plot_accuracy, plot_correlation, simulate
    from zoo.training import load_trained

    m, ev = p.models[model], p.evaluation
    zoo = p.zoo_of(model)
    ckpt = snn_file(zoo, model, variant)
    snn = load_snn(ckpt)
    ann = load_trained(train_dir(model))
    test = PreparedData(data_dir(m.dataset)).test
    total = len(test)
    test = eval_subset(test, ev.images_for(m.dataset))
    t0 = time.time()
    result = evaluate_snn(snn, test, ev.timesteps, batch_size=ev.batch_size, chunk=ev.chunk, ann=ann,
                          accelerator=ev.accelerator, devices=ev.devices, strategy=ev.strategy)
    seconds = time.time() - t0
    out = eval_dir(zoo, model)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": model, "variant": variant, "images": result.images, "test_split_images": total,
        "ann_accuracy": result.ann_accuracy,
        "accuracy": {str(t): a for t, a in result.accuracy.items()},
        "energy_ratio": {str(t): e for t, e in result.energy_ratio.items()},
        "spikes_per_image": {str(t): s for t, s in result.spikes_per_image.items()},
        "synops_per_image": {str(t): s for t, s in result.synops_per_image.items()},
        "ann_macs_per_image": result.ann_macs_per_image, "energy_constants_pJ": result.constants,
        "layer_rates": result.layer_rates, "seconds": round(seconds, 2), "devices": ev.devices,
        "draws": snn.draws,  # the random draws behind these figures (None: deterministic), for zoo evaluate
    }
    write_json(out / f"{variant}.json", metrics)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["T", "accuracy", "spikes_per_image", "synops_per_image", "energy_ratio"])
    for t in result.timesteps:
        w.writerow([t, f"{result.accuracy[t]:.6f}", f"{result.spikes_per_image[t]:.2f}",
                    f"{result.synops_per_image[t]:.2f}", f"{result.energy_ratio[t]:.6f}"])
    with atomic_path(out / f"{variant}.csv") as tmp:
        tmp.write_text(buf.getvalue())
    plots = out / f"{variant}-plots"
    plots.mkdir(exist_ok=True)
    for old in plots.glob(f"{variant}-*"):  # a direct run (not dvc repro) may leave files of another setting
        old.unlink()
    plot_accuracy({variant: result}, plots / f"{variant}-accuracy.png", result.ann_accuracy, title=f"{model} / {variant}")
    if ev.diagnostics:  # per-layer SNN rate vs ANN activation, on the first batch
        diag = simulate(snn, test, [max(ev.timesteps)], batch_size=min(ev.batch_size, 64), max_batches=1,
                        diagnostics=True, chunk=ev.chunk, progress=False, count_ops=False)
        write_json(plots / f"{variant}-correlation.json", diag.correlation)
        plot_correlation(diag, plots / f"{variant}-correlation.png")
    log_evaluation(p, zoo, model, variant)
    log.info("%s/%s: %s", model, variant, {t: round(a, 4) for t, a in result.accuracy.items()})


def log_evaluation(p: Params, zoo: str, model: str, variant: str, restored: bool = False) -> str:
    """Log the evaluate stage's result for one variant (``models/eval/<zoo>/<model>/<variant>.json``, its table
    and plots, the checkpoint and its recipe) as an MLflow child run; returns the run id. ``restored``: the
    result was committed by an earlier ``dvc repro`` and this store has no run of it (a fresh clone)."""
    from zoo.tracking import log_variant

    m = p.models[model]
    ckpt, out = snn_file(zoo, model, variant), eval_dir(zoo, model)
    metrics = json.loads((out / f"{variant}.json").read_text())
    plots = out / f"{variant}-plots"
    artifacts = [out / f"{variant}.json", out / f"{variant}.csv"] + [
        plots / f"{variant}-{kind}" for kind in ("accuracy.png", "correlation.json", "correlation.png")
        if (plots / f"{variant}-{kind}").is_file()]
    recipe = json.loads(ckpt.with_suffix(".json").read_text())["recipe"]
    tags = {"dvc_stage": f"evaluate-{zoo}@{model}-{variant}", "snn_sha256": sha256_file(ckpt),
            "dvc_lock_md5": _lock_md5(f"convert-{zoo}@{model}-{variant}", ckpt), "arch": m.arch, "dataset": m.dataset}
    if restored:
        tags["zoo_restored_from"] = str(out / f"{variant}.json")
    return log_variant(_tracking_uri(p), p.tracking.experiment, model=model, variant=variant,
                       ann_sha256=_meta(model).get("model_sha256", "unknown"), recipe=recipe, result=metrics,
                       artifacts=artifacts, checkpoint=ckpt, tags=tags,
                       parent_tags={"arch": m.arch, "dataset": m.dataset, "zoo": zoo})


ENTRY = "entry.json"  # a packaged model's index entry, beside its checkpoints and card


def package_dir(p: Params, zoo: str, model: str) -> Path:
    """``<zoos.<zoo>.dir>/<model>``: the published folder of one model (checkpoints, card, plot, entry)."""
    return Path(p.zoos[zoo].dir) / model


def _published_variants(p: Params, zoo: str, model: str, default: str) -> list[str]:
    """The variants of ``model`` that get a checkpoint in git: all, or only ``default`` for the zoo's
    ``default_only`` models. Raises ValueError, before anything is written, if they alone exceed ``max_mib``."""
    z = p.zoos[zoo]
    variants = [v for v in z.variants if model not in z.default_only or v == default]
    total = sum(snn_file(zoo, model, v).stat().st_size for v in variants)
    if total > z.max_mib * 2**20:
        raise _too_large(p, zoo, model, total, model)
    return variants


def _too_large(p: Params, zoo: str, what: str, total: int, fix: str, listed: str = "") -> ValueError:
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
    published = _published_variants(p, zoo, model, default)
    meta = _meta(model)
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
    uri = _tracking_uri(p)
    for variant in z.variants:  # dvc repro skipped evaluations committed with the lock: log them from their files
        sha = sha256_file(snn_file(zoo, model, variant))
        if latest_run(uri, p.tracking.experiment, {"zoo_model": model, "zoo_variant": variant, "snn_sha256": sha}) is None:
            log_evaluation(p, zoo, model, variant, restored=True)
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
    linked = _link_runs_to_lock(p, zoo, model)
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


def publish(p: Params, zoo: str) -> None:
    """Join the packaged models of a zoo (``<dir>/<model>/entry.json``) into ``<dir>/index.json`` and the zoo's
    ``README.md`` table; refuses a zoo whose checkpoints exceed ``max_mib``, before anything is written."""
    from zoo import cards, hub

    z = p.zoos[zoo]
    out = Path(z.dir)
    entries = {model: read_package(p, zoo, model) for model in z.models}
    sizes = {m: sum(v.get("size", 0) for v in e["variants"].values()) for m, e in entries.items()}
    if sum(sizes.values()) > z.max_mib * 2**20:
        listed = ", ".join(f"{m} {b / 2**20:.1f} MiB" for m, b in sorted(sizes.items(), key=lambda kv: -kv[1]))
        raise _too_large(p, zoo, f"zoo {zoo!r}", sum(sizes.values()), "the largest models", listed)
    for d in sorted(out.glob(f"*/{ENTRY}")):
        if d.parent.name not in entries:
            log.warning("%s: not a model of zoo %r (params.yaml zoos.%s.models) and not in its index: remove it",
                        d.parent, zoo, zoo)
    index: dict[str, Any] = {"schema": hub.SCHEMA, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "models": entries}
    if z.remote:
        index["remote"] = z.remote
    hub.write_index(index, out / "index.json")
    cards.render_zoo_readme(index, out)
    log.info("published %d models (%d checkpoints) in %s", len(entries),
             sum("file" in v for e in entries.values() for v in e["variants"].values()), out / "index.json")


def _lock_md5(stage: str, out: Path | None = None) -> str:
    """md5 of ``stage``'s entry in dvc.lock, or "none" when it does not describe the current files.

    DVC writes a stage's entry when the stage completes, so under ``dvc repro`` the convert stage that produced
    the checkpoint being evaluated is there. A stage run directly (``python pipeline/convert.py``) leaves the
    entry of the previous DVC run in place; with ``out`` given, the entry counts only if its recorded md5 of
    ``out`` is the file's md5 now, so such a stale entry gives "none" (the package stage fills the tag in later,
    see :func:`_link_runs_to_lock`).
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


def _link_runs_to_lock(p: Params, zoo: str, model: str) -> int:
    """Tag each variant's MLflow run with the dvc.lock entry of the convert stage that made its checkpoint.

    Evaluate stages run outside ``dvc repro`` (then ``dvc commit``-ed) log ``dvc_lock_md5=none``; by the time
    ``package`` runs the lock is current. Runs are matched by model, variant and the checkpoint's sha256, so a
    run of another checkpoint is never relabelled. Returns the number of runs tagged.
    """
    from zoo.tracking import set_run_tags

    n = 0
    for variant in p.zoos[zoo].variants:
        ckpt = snn_file(zoo, model, variant)
        md5 = _lock_md5(f"convert-{zoo}@{model}-{variant}", ckpt)
        if md5 != "none":
            n += set_run_tags(_tracking_uri(p), p.tracking.experiment,
                              {"zoo_model": model, "zoo_variant": variant, "snn_sha256": sha256_file(ckpt)},
                              {"dvc_lock_md5": md5})
    return n


STAGES = {"prepare": (prepare, 1), "train": (train, 1), "export": (export, 1), "calibrate": (calibrate, 1),
          "convert": (convert, 2), "evaluate": (evaluate, 2), "package": (package, 2), "publish": (publish, 1)}


def main(stage: str, argv: list[str] | None = None) -> int:
    """Entry point of ``pipeline/<stage>.py``: validate params.yaml, then run the stage."""
    fn, nargs = STAGES[stage]
    ap = argparse.ArgumentParser(prog=f"pipeline/{stage}.py", description=(fn.__doc__ or "").strip() or None)
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
    return 0


__all__ = ["main", "STAGES", "train_dir", "snn_file", "eval_dir", "data_dir"]
