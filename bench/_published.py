"""What the export benches (onnx_parity.py, nir_snntorch.py) share: their command line, and a published model
with the pipeline's seeded subset of its real test split."""
from __future__ import annotations

import argparse

import torch

import zoo
from zoo.evaluation import eval_subset


def parse_args(description: str, default_models: list[str], argv=None) -> tuple[argparse.Namespace, list[int]]:
    """``--models``, ``--images``, ``-t``, ``--threads``, ``--batch``; sets torch's threads; returns the args and
    the sorted T values."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--models", nargs="+", default=default_models,
                    help="published models, NAME or NAME:VARIANT (default variant otherwise)")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("-t", "--timesteps", default="8,32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args, sorted({int(t) for t in args.timesteps.split(",")})


def published_subset(spec: str, images: int):
    """``(name, variant, snn, x, y)`` for ``NAME`` or ``NAME:VARIANT``: the loaded model and ``images`` seeded
    test images with their labels."""
    name, _, variant = spec.partition(":")
    snn = zoo.load(name, variant or None)
    data = eval_subset(zoo.test_data(name), images)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    return name, snn.zoo_variant, snn, x, y
