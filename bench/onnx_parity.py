"""Published spiking models exported to ONNX and run in onnxruntime, against zoo.simulate, in one run.

For each model and variant: ``zoo export`` writes the one-timestep graph, onnxruntime loops it T times on a
fixed seeded subset of the real test split, and zoo.simulate runs the checkpoint on the same images. The table
gives both accuracies at every T, how many images the two classify differently, and the time each took.

    python bench/onnx_parity.py                                   # diehl-convnet-mnist + sresnet20-cifar10
    python bench/onnx_parity.py --models sresnet20-qcfs-cifar10:li2021 --images 1000 -t 8,16,32

Needs the data root (``$ZOO_DATA_DIR``) with MNIST and CIFAR-10.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from _published import parse_args, published_subset  # noqa: E402
from zoo.export import _session  # noqa: E402
from zoo.interchange import export_snn  # noqa: E402
from zoo.interchange.onnx import snn_initial_state  # noqa: E402


def onnx_predictions(path: Path, x: np.ndarray, timesteps: list[int], threads: int) -> dict[int, np.ndarray]:
    """Class predictions of the exported step graph after each T in ``timesteps`` (one run up to max T)."""
    sess = _session(path, threads)
    names = [i.name for i in sess.get_inputs()]
    state, total, preds = snn_initial_state(path, x), None, {}
    for t in range(1, max(timesteps) + 1):
        outs = sess.run(None, {names[0]: x, **state})
        total = outs[0] if total is None else total + outs[0]
        state = dict(zip(names[1:], outs[1:]))
        if t in timesteps:
            preds[t] = total.argmax(1)
    return preds


def main(argv=None) -> None:
    args, ts = parse_args(__doc__.split("\n")[0], ["diehl-convnet-mnist", "sresnet20-cifar10"], argv)
    rows = []
    for spec in args.models:
        name, variant, snn, x, y = published_subset(spec, args.images)
        t0 = time.time()
        sim = zoo.simulate(snn, (x, y), ts, batch_size=args.batch, progress=False, count_ops=False)
        t_sim = time.time() - t0
        with tempfile.TemporaryDirectory() as tmp:
            path = export_snn(snn, Path(tmp) / "snn.onnx")
            t0 = time.time()
            preds = {t: [] for t in ts}
            for i in range(0, len(x), args.batch):
                for t, p in onnx_predictions(path, x[i:i + args.batch].numpy(), ts, args.threads).items():
                    preds[t].append(p)
            t_ort = time.time() - t0
        ref = {}
        with torch.no_grad():  # zoo.simulate's predictions, to count disagreements image by image
            for t in ts:
                ref[t] = torch.cat([snn.run(x[i:i + args.batch], t).argmax(1) for i in range(0, len(x), args.batch)])
        for t in ts:
            p = np.concatenate(preds[t])
            rows.append((name, variant, t, len(x), sim.accuracy[t], float((p == y.numpy()).mean()),
                         int((p != ref[t].numpy()).sum()), t_sim, t_ort))
    print(f"{'model':<24} {'variant':<18} {'T':>4} {'images':>6} {'zoo.simulate':>12} {'onnxruntime':>11} "
          f"{'differ':>6} {'time ort/sim':>12}")
    for name, variant, t, n, a_sim, a_ort, differ, t_sim, t_ort in rows:
        print(f"{name:<24} {variant:<18} {t:>4} {n:>6} {a_sim:>11.2%} {a_ort:>11.2%} {differ:>6} "
              f"{t_ort / t_sim:>11.2f}x")


if __name__ == "__main__":
    main()
