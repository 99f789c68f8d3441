"""Cost of one training step in NCHW vs channels-last (NHWC) layout, on the CPU (``train.channels_last``).

For each architecture, one step is what ``zoo.training`` does per batch: random crop + flip of a batch of ``B``
random 32x32 images, forward, label-smoothed cross-entropy, backward, SGD (Nesterov momentum) step, with
deterministic algorithms on (warn only), as the Lightning trainer runs them. The two layouts are timed in
interleaved rounds (``--warmup`` untimed steps each, then ``--repeats`` rounds of one step per layout, in
alternating order), so both see the same load; the table gives the medians and the median of the per-round
ratios NCHW / NHWC (> 1: channels-last is faster). Data loading and validation are not included.

    python bench/train_step.py               # resnet20, vgg16 half width, inception half and full width (~2 min)
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


def make_step(spec: str, batch: int, channels_last: bool, seed: int = 0):
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
        F.cross_entropy(model(x), labels, label_smoothing=0.1).backward()
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
    print("| arch | NCHW s/step | NHWC s/step | speed-up (median of per-round ratios) | min/epoch NHWC (45k images) |")
    print("|---|--:|--:|--:|--:|")
    for spec in a.archs:
        steps = {False: make_step(spec, a.batch, False), True: make_step(spec, a.batch, True)}
        for _ in range(a.warmup):
            for s in steps.values():
                s()
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(a.repeats):
            for layout in ((False, True) if r % 2 == 0 else (True, False)):
                times[layout].append(steps[layout]())
        nchw, nhwc = statistics.median(times[False]), statistics.median(times[True])
        ratio = statistics.median(x / y for x, y in zip(times[False], times[True]))
        epoch = nhwc * (45000 // a.batch) / 60
        print(f"| `{spec}` | {nchw:.3f} | {nhwc:.3f} | {ratio:.2f}x | {epoch:.1f} |", flush=True)
    print(f"\n(run took {(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
