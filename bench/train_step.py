"""Cost of one training step in NCHW, channels-last (NHWC) and channels-last under bfloat16 autocast, on the
CPU (``train.channels_last``, ``train.precision: bf16-mixed``).

For each architecture, one step is what ``zoo.training`` does per batch: random crop + flip of a batch of ``B``
random 32x32 images, forward (under ``torch.autocast(dtype=bfloat16)`` for bf16, as Lightning's ``bf16-mixed``
runs it), label-smoothed cross-entropy, backward, SGD (Nesterov momentum) step on float32 weights, with
deterministic algorithms on (warn only), as the Lightning trainer runs them. The three settings are timed in
interleaved rounds (``--warmup`` untimed steps each, then ``--repeats`` rounds of one step per setting, in
rotating order), so all see the same load; the table gives the medians and the medians of the per-round ratios
NCHW / NHWC and NHWC / NHWC+bf16 (> 1: the second is faster). Data loading and validation are not included.

    python bench/train_step.py               # resnet20, vgg16 half width, inception half and full width
    python bench/train_step.py --archs resnet20_cifar --threads 2 --repeats 20
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import time

import timm
import torch
import torch.nn.functional as F

import zoo.models  # noqa: F401  (registers the zoo's architectures)
from zoo.training import random_crop, random_hflip

DEFAULT_ARCHS = ["resnet20_cifar", "vgg16_cifar:width=0.5", "inception_cifar:width=0.5", "inception_cifar"]


def parse_arch(spec: str) -> tuple[str, dict[str, float]]:
    name, _, rest = spec.partition(":")
    kw = {k: float(v) for k, v in (item.split("=") for item in rest.split(",") if item)}
    return name, kw


SETTINGS = {"nchw": (False, False), "nhwc": (True, False), "nhwc+bf16": (True, True)}  # (channels_last, bf16)


def make_step(spec: str, batch: int, channels_last: bool, bf16: bool = False, seed: int = 0):
    name, kw = parse_arch(spec)
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=10, **kw).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images, labels = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step() -> float:
        t = time.perf_counter()
        x = random_hflip(random_crop(images, 4))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), labels, label_smoothing=0.1).backward()
        opt.step()
        return time.perf_counter() - t

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=DEFAULT_ARCHS, help="timm names, optionally name:key=value,...")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    start = time.time()
    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__} with {a.threads} "
          f"intra-op thread(s), Python {platform.python_version()}. Date: "
          f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Batch {a.batch}, {a.repeats} rounds.\n")
    print("| arch | NCHW s/step | NHWC s/step | NHWC+bf16 s/step | NCHW/NHWC | NHWC/NHWC+bf16 "
          "| min/epoch NHWC+bf16 (45k images) |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    names = list(SETTINGS)
    for spec in a.archs:
        steps = {n: make_step(spec, a.batch, *SETTINGS[n]) for n in names}
        for _ in range(a.warmup):
            for s in steps.values():
                s()
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(a.repeats):
            for n in names[r % 3:] + names[:r % 3]:
                times[n].append(steps[n]())
        med = {n: statistics.median(times[n]) for n in names}
        layout = statistics.median(x / y for x, y in zip(times["nchw"], times["nhwc"]))
        bf16 = statistics.median(x / y for x, y in zip(times["nhwc"], times["nhwc+bf16"]))
        epoch = med["nhwc+bf16"] * (45000 // a.batch) / 60
        print(f"| `{spec}` | {med['nchw']:.3f} | {med['nhwc']:.3f} | {med['nhwc+bf16']:.3f} | {layout:.2f}x "
              f"| {bf16:.2f}x | {epoch:.1f} |", flush=True)
    print(f"\n(run took {(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
