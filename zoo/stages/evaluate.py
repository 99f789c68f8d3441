"""Stage ``evaluate-<zoo>@<model>-<variant>``: simulate an SNN checkpoint on the test images at every T
(accuracy, spikes, synaptic operations, energy), write its metrics, table and plots, and log it to MLflow."""
from __future__ import annotations

import csv
import io
import logging
import time

from zoo.config import Params
from zoo.stages.common import data_dir, eval_dir, snn_file, train_dir
from zoo.stages.runs import log_evaluation
from zoo.utils import atomic_path, write_json

log = logging.getLogger("zoo.stages")


def evaluate(p: Params, model: str, variant: str) -> None:

    from zoo.data import PreparedData
    from zoo.evaluation import eval_subset, evaluate_snn
    from zoo.serialization import load_snn
    from zoo.simulation import plot_accuracy, plot_correlation, simulate
    from zoo.training import load_trained

    m = p.models[model]
    zoo = p.zoo_of(model)
    ev = p.evaluation_for(zoo)
    ckpt = snn_file(zoo, model, variant)
    snn = load_snn(ckpt)
    ann = load_trained(train_dir(model))
    if ann.zoo_meta.get("timesteps"):  # a directly trained SNN: its reference is itself at its training T
        from zoo.spiking.network import MultiStep

        ann = MultiStep(ann, ann.zoo_meta["timesteps"]).eval()
    test = PreparedData(data_dir(m.dataset)).test
    total = len(test)
    test = eval_subset(test, ev.images_for(m.dataset))
    t0 = time.time()
    # the zoo's T ladder, and the longer T of a variant that declares its own (stored in its checkpoint)
    timesteps = sorted(set(ev.timesteps) | set(snn.config.get("recipe", {}).get("timesteps", [])))
    result = evaluate_snn(snn, test, timesteps, batch_size=ev.batch_size, chunk=ev.chunk, ann=ann,
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
        diag = simulate(snn, test, [max(timesteps)], batch_size=min(ev.batch_size, 64), max_batches=1,
                        diagnostics=True, chunk=ev.chunk, progress=False, count_ops=False)
        write_json(plots / f"{variant}-correlation.json", diag.correlation)
        plot_correlation(diag, plots / f"{variant}-correlation.png")
    log_evaluation(p, zoo, model, variant)
    log.info("%s/%s: %s", model, variant, {t: round(a, 4) for t, a in result.accuracy.items()})
