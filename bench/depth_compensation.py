"""Hu et al.'s depth compensation on a deep ResNet: accuracy at every T and the rate gain per layer, in one run.

A published checkpoint in threshold form (the zoo's ``low-latency`` variants: IF neurons, analog input,
membrane readout) holds the ANN's batch-norm-folded weights unchanged, so replacing its neurons with ReLU gives
back the trained ANN (the script prints its accuracy next to the index's ANN figure). That ANN is converted with

* ``rueckauer2017`` (no compensation),
* ``hu2018`` as snn-zoo builds it now: the gain accumulated over a neuron's depth d is ``1 + c*d``,
* ``hu2018`` compounded: a factor ``1 + c*d`` in every layer (snn-zoo before 13f0ae5), emulated by lowering
  the uncompensated thresholds by ``1 + c*d``,

all in the threshold form (hu2018's weight form emits the same spikes, tests/test_conversion.py), with the
same calibration images, and each is simulated on the same fixed test subset. ``gain`` is the SNN's output
(rate x amplitude, at T_max) over the ANN's activation, summed over the images and neurons of a layer:
1 is exact; below 1 the rates fall short; far above 1 they saturate.

    python bench/depth_compensation.py                                  # sresnet56-cifar10, 100 images, T<=512
    python bench/depth_compensation.py --model sresnet20-cifar10 --images 300 --threads 2
    python bench/depth_compensation.py --sweep 0.02 0.04                # more values of c, same images

Needs the CIFAR-10 data root (``$ZOO_DATA_DIR``) and the prepared calibration split
(``dvc repro -s prepare@cifar10``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.conversion.ann import ann_from_snn  # noqa: E402
from zoo.conversion.graph import canonicalize  # noqa: E402
from zoo.conversion.normalization import neuron_depths  # noqa: E402
from zoo.data import PreparedData  # noqa: E402
from zoo.evaluation import eval_subset  # noqa: E402
from zoo.hub import test_data  # noqa: E402
from zoo.serialization import load_snn  # noqa: E402
from zoo.spiking.neuron import IFNode  # noqa: E402


def compounded(snn, c: float):
    """Lower every threshold of an uncompensated threshold-form SNN by 1 + c*depth (the compounding scheme)."""
    depth = neuron_depths(snn.body, lambda n: isinstance(snn.body.get_submodule(n.target), IFNode))
    with torch.no_grad():
        for name, m in snn.neurons().items():
            m.threshold.div_(1.0 + c * depth[name])
    return snn


def layer_gains(snn, ann: nn.Module, x: torch.Tensor, t_max: int) -> list[float]:
    """SNN output over ANN activation per neuron layer, from the neurons' spike sums of the last simulated batch."""
    acts: list[torch.Tensor] = []
    relus = [m for m in ann.modules() if isinstance(m, nn.ReLU)]
    hooks = [m.register_forward_hook(lambda mod, i, o: acts.append(o.detach())) for m in relus]
    with torch.no_grad():
        ann(x)
    for h in hooks:
        h.remove()
    neurons = list(snn.neurons().values())
    if len(neurons) != len(acts):  # the layers are paired by order: both come from the same ANN's ReLUs
        raise RuntimeError(f"{len(neurons)} neuron layers but {len(acts)} ReLU layers in the ANN")
    gains = []
    for m, a in zip(neurons, acts):
        amp = m.amplitude.reshape(-1)
        v = m.rate_sum / t_max
        v = v * (amp.reshape(1, -1, *([1] * (v.ndim - 2))) if amp.numel() > 1 else amp)
        gains.append(float(v.sum() / a.sum().clamp(min=1e-12)))
    return gains


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sresnet56-cifar10", help="a published CIFAR-10 model of models/zoo")
    p.add_argument("--checkpoint", default=None, help="default: models/zoo/<model>/low-latency.safetensors")
    p.add_argument("--prepared", default=str(ROOT / "data/prepared/cifar10"), help="the prepare stage's output")
    p.add_argument("--images", type=int, default=100, help="the pipeline's fixed seeded test subset")
    p.add_argument("--timesteps", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--c", type=float, default=0.005, help="depth_compensation (hu2018's default)")
    p.add_argument("--sweep", type=float, nargs="*", default=[], help="more values of c for hu2018 (accumulated)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint or ROOT / "models/zoo" / a.model / "low-latency.safetensors")
    if not (Path(a.prepared) / "calibration.safetensors").is_file():
        raise SystemExit(f"no calibration split at {a.prepared}: run `dvc repro -s prepare@cifar10` first")
    ann = ann_from_snn(load_snn(ckpt))
    calib = PreparedData(a.prepared).calibration
    data = eval_subset(test_data(a.model), a.images)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    with torch.no_grad():
        ann_acc = float((ann(x).argmax(1) == y).float().mean())
    index = json.loads((ROOT / "models/zoo/index.json").read_text())["models"][a.model]
    print(f"{a.model}: {ckpt.name} -> ANN {ann_acc:.2%} on {len(y)} test images "
          f"(index: {index['evaluation']['ann_accuracy']:.2%} on {index['evaluation']['test_images']}); "
          f"{len(calib)} calibration images; c={a.c}; torch {torch.__version__}, {a.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    stats = zoo.calibrate(canonicalize(ann), calib, progress=False)
    runs = {
        "rueckauer2017": lambda: zoo.convert(ann, stats=stats, variant="rueckauer2017", input_shape=tuple(x.shape[1:]),
                                             progress=False),
        "hu2018 (1+c*d accumulated)": lambda: zoo.convert(ann, stats=stats, variant="hu2018", form="threshold",
                                                          depth_compensation=a.c, input_shape=tuple(x.shape[1:]),
                                                          progress=False),
        "hu2018 compounded": lambda: compounded(zoo.convert(ann, stats=stats, variant="hu2018", form="threshold",
                                                            depth_compensation=0.0, input_shape=tuple(x.shape[1:]),
                                                            progress=False), a.c),
    }
    for c in a.sweep:
        runs[f"hu2018, c={c}"] = lambda c=c: zoo.convert(ann, stats=stats, variant="hu2018", form="threshold",
                                                         depth_compensation=c, input_shape=tuple(x.shape[1:]),
                                                         progress=False)
    t_max, rows = max(a.timesteps), {}
    for name, build in runs.items():
        t0 = time.perf_counter()
        snn = build()
        res = zoo.simulate(snn, (x, y), a.timesteps, batch_size=len(y), progress=False, count_ops=False)
        gains = layer_gains(snn, ann, x, t_max)
        rows[name] = dict(accuracy={t: res.accuracy[t] for t in a.timesteps}, gain_last=gains[-1],
                          gain_min=min(gains), gain_max=max(gains), seconds=time.perf_counter() - t0, gains=gains)
        print(f"  {name}: {rows[name]['seconds']:.0f} s", file=sys.stderr)
    head = " | ".join(f"T={t}" for t in a.timesteps)
    layers = len(next(iter(rows.values()))["gains"])
    print(f"\n| variant | {head} | gain, last layer | gain, min-max over {layers} layers |")
    print("|---|" + "--:|" * len(a.timesteps) + "--:|--:|")
    print("| ANN | " + " | ".join(f"{ann_acc:.1%}" for _ in a.timesteps) + " | 1 | 1 |")
    for name, r in rows.items():
        accs = " | ".join(f"{r['accuracy'][t]:.1%}" for t in a.timesteps)
        print(f"| {name} | {accs} | {r['gain_last']:.2f} | {r['gain_min']:.2f}-{r['gain_max']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(model=a.model, images=len(y), ann_accuracy=ann_acc, c=a.c,
                                                rows=rows), indent=1))


if __name__ == "__main__":
    main()
