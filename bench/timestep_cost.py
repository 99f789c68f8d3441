"""Cost of one SNN timestep relative to one ANN forward, on the CPU.

For each model (random weights; BatchNorm statistics from a few train-mode passes on random data, then eval)
the ANN is converted with ``zoo.convert(model, calib, "rueckauer2017")`` and we time, under ``torch.no_grad()``
with ``time.perf_counter`` (``--clock cpu``: ``time.process_time``; median of ``--repeats`` after one warm-up):

* ANN: one forward of a batch of ``B`` images;
* SNN: ``snn(x, steps=T)`` on the same ``B`` images divided by ``T``, for each chunk size ``T`` (state reset
  before each repeat, outside the timed region).

ANN and SNN runs are interleaved round by round (one warm-up round), so that both see the same load on a shared
machine; the table gives the ratio of the medians and the median of the per-round ratios (more robust to load
changing during the run). The ratio SNN-step / ANN-forward is the price of one timestep; the goal is <= 1.3. A breakdown then shows
where one SNN chunk spends its time, by module type (forward hooks: Conv2d/Linear, IFNode, spiking max-pool,
the rest of the graph) next to the same split for the ANN, and the top aten ops from ``torch.profiler``.

    python bench/timestep_cost.py                       # resnet20_cifar + vgg16_cifar, B=64, T=32 and 8
    python bench/timestep_cost.py --models resnet20_cifar --batch 32 --chunk 32 --repeats 3 --threads 2
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402

import zoo  # noqa: E402
import zoo.models  # noqa: E402,F401 - registers the architectures
from zoo.spiking.layer import RateGatedMaxPool2d  # noqa: E402
from zoo.spiking.neuron import BaseNode  # noqa: E402

INPUT = (3, 32, 32)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # set by --clock


def build(name: str, *, bn_batches: int = 4, bn_batch: int = 32, seed: int = 0) -> nn.Module:
    """Random weights, BN running statistics from ``bn_batches`` train-mode passes on random data, eval."""
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(bn_batches):
            model(torch.randn(bn_batch, *INPUT))
    return model.eval()


def _category(m: nn.Module) -> str | None:
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        return "conv/linear"
    if isinstance(m, BaseNode):
        return "IF neurons"
    if isinstance(m, RateGatedMaxPool2d):
        return "spiking max-pool"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batch-norm"
    if isinstance(m, (nn.ReLU, nn.ReLU6)):
        return "relu"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return "pooling"
    return None


def module_breakdown(root: nn.Module, fn: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Seconds of one ``fn()`` call, and per module category (forward hooks on ``root``'s leaf modules,
    timed with the chosen clock; ops run one after the other)."""
    acc: dict[str, float] = defaultdict(float)
    start: dict[int, float] = {}
    handles = []
    for m in root.modules():
        cat = _category(m)
        if cat is None:
            continue

        def pre(mod, args, _id=id(m)):
            start[_id] = clock()

        def post(mod, args, out, _id=id(m), _cat=cat):
            acc[_cat] += clock() - start.pop(_id)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        t0 = clock()
        fn()
        total = clock() - t0
    finally:
        for h in handles:
            h.remove()
    acc["rest of the graph (adds, flatten, readout, ...)"] = max(0.0, total - sum(acc.values()))
    return total, dict(acc)


def top_ops(fn: Callable[[], object], n: int = 8) -> list[tuple[str, float, int]]:
    """The ``n`` aten ops with most self CPU time in one ``fn()`` call: (name, ms, calls)."""
    from torch.profiler import ProfilerActivity, profile

    sys.stderr.flush()
    saved = os.dup(2)
    try:  # kineto prints start/stop lines and GPU probing errors on fd 2
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in rows[:n]]


def machine_line() -> str:
    cores = os.cpu_count()
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        avail = cores
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"machine: {cpu}; {cores} cores ({avail} usable); torch.get_num_threads()={torch.get_num_threads()}; "
            f"torch {torch.__version__}; python {platform.python_version()}")


def _median_time(fn: Callable[[], object], repeats: int = 3, setup: Callable[[], object] | None = None) -> float:
    """Median ``clock`` seconds of ``fn()`` over ``repeats`` runs after one warm-up; ``setup`` runs untimed."""
    times = []
    for i in range(repeats + 1):
        if setup is not None:
            setup()
        t0 = clock()
        fn()
        if i:
            times.append(clock() - t0)
    return statistics.median(times)


def diagnose(name: str, model: nn.Module, snn, x: Tensor, T: int, ann_s: float) -> None:
    """Two measurements that separate the causes: (1) the BN-folded ANN (the SNN's synaptic layers) at batch B
    and at batch T*B, per B images: the cost of running convolutions on a T-times larger batch (cache);
    (2) the SNN per timestep when the chunk is small (T=1, 2): the same work, a B-sized working set."""
    from zoo.conversion.graph import canonicalize

    folded = canonicalize(model)
    B = x.shape[0]
    xb = x.repeat(T, *([1] * (x.ndim - 1)))
    f1 = _median_time(lambda: folded(x))
    fT = _median_time(lambda: folded(xb)) / T
    print(f"  diagnosis: BN-folded ANN at batch {B}: {f1 * 1e3:.1f} ms; at batch T*B={T * B}: {fT * 1e3:.1f} ms per "
          f"{B} images (x{fT / f1:.2f}: the cost of the chunk's larger working set for the synaptic layers)")
    for t in (1, 2):
        st = _median_time(lambda: snn(x, steps=t), setup=snn.reset_state) / t
        print(f"  diagnosis: SNN at chunk T={t}: {st * 1e3:.1f} ms/step, ratio {st / ann_s:.2f} to the ANN forward")


def run_model(name: str, batch: int, chunks: list[int], repeats: int, profile: bool) -> list[dict]:
    model = build(name)
    torch.manual_seed(1)
    calib = torch.randn(128, *INPUT)
    x = torch.randn(batch, *INPUT)
    with torch.no_grad():
        snn = zoo.convert(model, calib, "rueckauer2017", progress=False)
        snn.eval()
        # Interleaved rounds (ANN forward, then one chunk per T) so that both sides see the same machine load;
        # the first round warms up (oneDNN primitives, allocator) and is not counted.
        ann_t: list[float] = []
        snn_t: dict[int, list[float]] = {T: [] for T in chunks}
        for r in range(1 + repeats):
            t0 = clock()
            model(x)
            ann = clock() - t0
            if r:
                ann_t.append(ann)
            for T in chunks:
                snn.reset_state()
                t0 = clock()
                snn(x, steps=T)
                dt = clock() - t0
                if r:
                    snn_t[T].append(dt / T)
        ann_s = statistics.median(ann_t)
        rows = []
        for T in chunks:
            step_s = statistics.median(snn_t[T])
            paired = statistics.median(s / a for s, a in zip(snn_t[T], ann_t))
            rows.append(dict(model=name, batch=batch, chunk=T, ann_ms=ann_s * 1e3, snn_ms=step_s * 1e3,
                             ratio=step_s / ann_s, paired_ratio=paired))
            print(f"  {name}: B={batch} T={T}: ANN {ann_s * 1e3:.1f} ms/forward, SNN {step_s * 1e3:.1f} ms/step, "
                  f"ratio {step_s / ann_s:.2f} (median of per-round ratios {paired:.2f})", flush=True)
        if profile:
            T = max(chunks)
            ann_total, ann_parts = module_breakdown(model, lambda: model(x))
            snn.reset_state()
            snn_total, snn_parts = module_breakdown(snn.body, lambda: snn(x, steps=T))
            print(f"\n  where the time goes, {name}, B={batch}, one ANN forward vs one SNN timestep (chunk T={T}, "
                  "total / T); share of each column's total:")
            print(f"  {'module type':<48} {'ANN ms':>8} {'':>5} {'SNN ms/step':>11} {'':>5}")
            cats = sorted(set(ann_parts) | set(snn_parts), key=lambda c: -snn_parts.get(c, 0.0))
            for c in cats:
                a, s = ann_parts.get(c, 0.0), snn_parts.get(c, 0.0) / T
                print(f"  {c:<48} {a * 1e3:8.2f} {a / ann_total:5.0%} {s * 1e3:11.2f} {s * T / snn_total:5.0%}")
            print(f"  {'total':<48} {ann_total * 1e3:8.2f} {'':>5} {snn_total / T * 1e3:11.2f}")
            snn.reset_state()
            ops = top_ops(lambda: snn(x, steps=T))
            print(f"  top aten ops in one SNN chunk (T={T}), self CPU ms per timestep (calls per chunk):")
            for key, ms, count in ops:
                print(f"    {key:<40} {ms / T:8.2f} ms/step  ({count} calls)")
            diagnose(name, model, snn, x, T, ann_s)
            print()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20_cifar,vgg16_cifar", help="comma-separated timm names (3x32x32)")
    p.add_argument("--batch", type=int, default=64, help="images per batch B (default 64)")
    p.add_argument("--chunk", default="32,8", help="comma-separated chunk sizes T (default 32,8)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: time.perf_counter (default); cpu: time.process_time, the process's CPU time, "
                        "robust to other load on a shared machine when used with --threads 1")
    p.add_argument("--no-profile", action="store_true", help="skip the breakdown of where the SNN time goes")
    a = p.parse_args(argv)
    global clock
    clock = CLOCKS[a.clock]
    if a.threads:
        torch.set_num_threads(a.threads)
    chunks = [int(c) for c in str(a.chunk).split(",") if c.strip()]
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    print(machine_line() + f"; clock={a.clock}", flush=True)
    rows = []
    for name in models:
        rows += run_model(name, a.batch, chunks, a.repeats, not a.no_profile)
    print("| model | batch | T-chunk | ANN ms/forward | SNN ms/timestep | ratio SNN-step/ANN | per-round ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['chunk']} | {r['ann_ms']:.1f} | {r['snn_ms']:.1f} | "
              f"{r['ratio']:.2f} | {r['paired_ratio']:.2f} |")
    print(machine_line())
    return rows


if __name__ == "__main__":
    main()
