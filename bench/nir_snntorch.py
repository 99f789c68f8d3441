"""Published spiking models exported to NIR and run in snnTorch, against zoo.simulate, in one run.

For each model and variant: ``zoo export -o F.nir`` writes the NIR graph; ``zoo.load_nir`` reads it back and
snn-zoo simulates the copy (the round trip); snnTorch's neurons run the same file
(:mod:`zoo.interchange.nir_snntorch`). All three see the same seeded subset of the real test split. The table
gives each accuracy at every T, how many images snnTorch classifies differently from zoo.simulate, and the time
snnTorch took relative to zoo.simulate. It also says what snnTorch 1.0's own ``import_from_nir`` makes of the
file.

    python bench/nir_snntorch.py                                  # the MNIST nets and ResNet-20 (hu2018)
    python bench/nir_snntorch.py --models diehl-convnet-mnist:hu2018 --images 10000 -t 32

Needs the data root (``$ZOO_DATA_DIR``) with MNIST and CIFAR-10.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from _published import parse_args, published_subset  # noqa: E402
from zoo.interchange import export_snn  # noqa: E402
from zoo.interchange.nir_snntorch import run_snntorch, snntorch_network  # noqa: E402


def _predict(run, x: torch.Tensor, t: int, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([run(x[i:i + batch], t).argmax(1) for i in range(0, len(x), batch)])


def snntorch_own_import(path: Path, x: torch.Tensor) -> str:
    """What snnTorch's own importer does with the file: its error, or that it ran."""
    import nir
    from snntorch.import_nir import import_from_nir

    try:
        net = import_from_nir(nir.read(str(path)))
        net(x[:2])
    except Exception as err:  # noqa: BLE001 - reported in the table's notes
        return f"{type(err).__name__}: {str(err).splitlines()[0][:90]}"
    return "ran (with its own neuron mapping: nir.IF -> Leaky(beta=0.9))"


def main(argv=None) -> None:
    args, ts = parse_args(__doc__.split("\n")[0], ["diehl-convnet-mnist:hu2018", "diehl-fcn-mnist:hu2018", "sresnet20-cifar10:hu2018"], argv)
    rows, notes = [], []
    for spec in args.models:
        name, variant, snn, x, y = published_subset(spec, args.images)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_snn(snn, Path(tmp) / "snn.nir")
            back = zoo.load_nir(path)
            net = snntorch_network(path)
            notes.append(f"{name} {variant}: snnTorch's import_from_nir: {snntorch_own_import(path, x)}")
        for t in ts:
            t0 = time.time()
            ref = _predict(snn.run, x, t, args.batch)
            t_sim = time.time() - t0
            rt = _predict(back.run, x, t, args.batch)
            t0 = time.time()
            st = _predict(lambda xb, tt: run_snntorch(net, xb, tt), x, t, args.batch)
            t_st = time.time() - t0
            acc = lambda p: float((p == y).float().mean())  # noqa: E731
            rows.append((name, variant, t, len(x), acc(ref), acc(rt), acc(st), int((st != ref).sum()),
                         int((rt != ref).sum()), t_st / t_sim))
    print(f"{'model':<22} {'variant':<10} {'T':>4} {'images':>6} {'zoo.simulate':>12} {'NIR->zoo':>9} "
          f"{'NIR->snnTorch':>13} {'differ':>6} {'rt differ':>9} {'time snnTorch/sim':>17}")
    for name, variant, t, n, a, b, c, d, e, r in rows:
        print(f"{name:<22} {variant:<10} {t:>4} {n:>6} {a:>11.2%} {b:>8.2%} {c:>12.2%} {d:>6} {e:>9} {r:>16.2f}x")
    print()
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
