"""Simulation and measurement: one run of T_max steps gives everything at every requested T.

Measured per run: accuracy at each T, spikes per image (per layer and total) at each T, firing rates,
synaptic operations (accumulates: every non-zero input event times its fan-out in the receiving layer),
MACs of layers fed by analog input (counted at every step), the ANN's MACs, and an energy estimate with the
45 nm figures of Horowitz (2014): ``E_MAC = 4.6 pJ`` (32-bit float multiply-accumulate), ``E_AC = 0.9 pJ``
(32-bit float add). Optionally the per-layer correlation between SNN rates and the rate-model (ANN)
activations.
"""
from __future__ import annotations

import dataclasses
import json
import math
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.conversion.graph import analog_fed
from zoo.inputs import InputError, check_images, check_not_empty
from zoo.spiking.network import SpikingNetwork
from zoo.spiking.neuron import BaseNode

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclasses.dataclass
class SimulationResult:
    timesteps: list[int]
    accuracy: dict[int, float]
    images: int
    spikes_per_image: dict[int, float]
    synops_per_image: dict[int, float]
    snn_macs_per_image: dict[int, float]
    ann_macs_per_image: float
    energy_snn_pj: dict[int, float]
    energy_ann_pj: float
    energy_ratio: dict[int, float]
    layer_rates: dict[str, float]
    ann_accuracy: float | None = None
    correlation: dict[str, float] | None = None
    constants: dict[str, float] = dataclasses.field(default_factory=lambda: {"E_MAC_pJ": E_MAC_PJ, "E_AC_pJ": E_AC_PJ})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, dict):
                d[k] = {str(kk): vv for kk, vv in v.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimulationResult":
        d = dict(d)
        for k in ("accuracy", "spikes_per_image", "synops_per_image", "snn_macs_per_image", "energy_snn_pj",
                  "energy_ratio"):
            d[k] = {int(t): v for t, v in d[k].items()}
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        from zoo.utils import write_json

        return write_json(path, self.to_dict())

    def best(self) -> tuple[int, float]:
        t = max(self.accuracy, key=lambda k: (self.accuracy[k], -k))
        return t, self.accuracy[t]

    def table(self) -> str:
        rows = ["   T  accuracy  spikes/img  synops/img  energy ratio"]
        for t in self.timesteps:
            rows.append(f"{t:4d}  {self.accuracy[t]:8.4f}  {self.spikes_per_image[t]:10.4g}  "
                        f"{self.synops_per_image[t]:10.4g}  {self.energy_ratio[t]:12.4f}")
        if self.ann_accuracy is not None:
            rows.append(f" ANN  {self.ann_accuracy:8.4f}")
        return "\n".join(rows)


class _OpCounter:
    """Forward pre-hooks on every Conv/Linear of the SNN body counting per-step input events x fan-out."""

    def __init__(self, snn: SpikingNetwork) -> None:
        body = snn.body
        barrier = lambda n: isinstance(body.get_submodule(n.target), BaseNode)  # noqa: E731
        self.analog = analog_fed(body, barrier) if isinstance(body, torch.fx.GraphModule) else set()
        self.analog_input = getattr(snn.encoder, "analog", True)
        names = {n.target: n.name for n in body.graph.nodes if n.op == "call_module"} if isinstance(
            body, torch.fx.GraphModule) else {}
        self.fanout: dict[str, Tensor] = {}
        self.macs: dict[str, float] = {}
        self.synops: Tensor | None = None  # [steps] summed over the batch
        self.mac_steps: Tensor | None = None
        self.handles = []
        self.active = False
        # events per position of the tensors seen in this sub-chunk, so that the convolutions sharing an input
        # (Inception branches, a residual block's shortcut) count its events once: (weakref to x, key, events)
        self._events: list[tuple[weakref.ref, tuple, Tensor]] = []
        for path, m in body.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                is_analog = self.analog_input and names.get(path) in self.analog
                self.handles.append(m.register_forward_pre_hook(self._hook(path, m, is_analog)))

    def _hook(self, path: str, m: nn.Module, is_analog: bool):
        def hook(mod, args):
            if not self.active:
                return
            x = args[0]
            T, B = mod_steps(self.snn_ref), self.batch
            t0 = self.snn_ref.step_offset
            if path not in self.fanout:
                self.fanout[path], self.macs[path] = _fanout_and_macs(mod, x[:1])
            if is_analog:
                self.mac_steps[t0:t0 + T] += self.macs[path] * B
                return
            events = self._events_of(x, T, B)  # [T, ...]
            per_step = (events * self.fanout[path]).reshape(T, -1).sum(1).double()
            self.synops[t0:t0 + T] += per_step.cpu()
        return hook

    def _events_of(self, x: Tensor, T: int, B: int) -> Tensor:
        """Non-zero inputs per position at each step, summed over the batch; computed once per tensor and
        sub-chunk (a tensor written in place since, or seen in another sub-chunk, is counted afresh)."""
        key = (self.snn_ref.step_offset, T, -1 if x.is_inference() else x._version)  # inference tensors: no counter
        for ref, k, events in self._events:
            if ref() is x and k == key:
                return events
        xs = x.reshape((T, B) + tuple(x.shape[1:])) if x.shape[0] == T * B else x.unsqueeze(0).expand(
            (T,) + tuple(x.shape))
        events = (xs != 0).sum(1, dtype=torch.float32)
        self._events = [e for e in self._events[-7:] if e[0]() is not None] + [(weakref.ref(x), key, events)]
        return events

    def start(self, snn, batch: int, steps: int) -> None:
        self.snn_ref, self.batch = snn, batch
        self.synops = torch.zeros(steps, dtype=torch.float64)
        self.mac_steps = torch.zeros(steps, dtype=torch.float64)
        self.active = True

    def stop(self) -> None:
        self.active = False
        self._events = []

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def mod_steps(snn: SpikingNetwork) -> int:
    return snn.readout.steps


def _fanout_and_macs(m: nn.Module, x1: Tensor) -> tuple[Tensor, float]:
    """Per input position, the number of synapses it drives in ``m``; and ``m``'s MACs for one sample.

    The fan-out is the gradient of the sum of ``m``'s outputs with all-one weights w.r.t. its input,
    computed with ``torch.nn.grad`` (no autograd, so it also works under inference mode).
    """
    x1 = x1[:1].float()
    if isinstance(m, nn.Linear):
        fan = torch.full(tuple(x1.shape[1:]), float(m.out_features), device=x1.device)
    else:
        ones = torch.ones_like(m.weight, dtype=torch.float32)
        conv = F.conv2d if isinstance(m, nn.Conv2d) else F.conv1d
        out = conv(torch.zeros_like(x1), ones, None, m.stride, m.padding, m.dilation, m.groups)
        grad_fn = torch.nn.grad.conv2d_input if isinstance(m, nn.Conv2d) else torch.nn.grad.conv1d_input
        fan = grad_fn(tuple(x1.shape), ones, torch.ones_like(out), m.stride, m.padding, m.dilation, m.groups)[0]
    return fan, float(fan.sum())


@torch.no_grad()
def _ann_macs(snn: SpikingNetwork, x1: Tensor) -> float:
    macs = []

    def hook(mod, args, out):
        x = args[0]
        per = out[0].numel()
        if isinstance(mod, nn.Linear):
            macs.append(per * mod.in_features)
        else:
            k = mod.weight[0].numel()  # in_channels/groups * kernel
            macs.append(per * k)

    handles = [m.register_forward_hook(hook) for m in snn.body.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        with rate_model(snn):
            snn.body(x1)
    finally:
        for h in handles:
            h.remove()
    return float(sum(macs))


class rate_model:
    """Context manager: run the SNN body as its rate-model ANN (each neuron -> its rate function)."""

    def __init__(self, snn: SpikingNetwork) -> None:
        self.snn = snn
        self.saved: list[tuple[nn.Module, Any]] = []

    def __enter__(self):
        from zoo.spiking.layer import RateGatedMaxPool2d

        for m in self.snn.body.modules():
            if isinstance(m, BaseNode):
                self.saved.append((m, m.forward))
                m.forward = m.rate
            elif isinstance(m, RateGatedMaxPool2d):
                self.saved.append((m, m.forward))
                m.forward = lambda x, m=m: F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                                        ceil_mode=m.ceil_mode)
        return self.snn

    def __exit__(self, *exc):
        for m, f in self.saved:
            m.forward = f
        # restore the class method (instance attribute removal)
        for m, _ in self.saved:
            if "forward" in m.__dict__:
                del m.__dict__["forward"]
        return False


def _as_loader(data, batch_size: int):
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        data = torch.utils.data.TensorDataset(data[0], data[1])
    if isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


class Simulator:
    """Accumulates the measurements of :func:`simulate` batch by batch.

    The sums are plain tensors (:meth:`totals` / :meth:`set_totals`) so that several processes can each
    simulate a shard and add them up (Lightning DDP evaluation in :mod:`zoo.evaluation`).
    """

    def __init__(self, snn: SpikingNetwork, timesteps: list[int], *, chunk: int | None = None,
                 ann: nn.Module | None = None, diagnostics: bool = False, count_ops: bool = True,
                 device: str | torch.device = "cpu") -> None:
        timesteps = sorted(set(timesteps or snn.timesteps))
        if not timesteps or timesteps[0] <= 0:
            raise ValueError(f"timesteps must be positive integers (T > 0), got {timesteps}")
        self.timesteps, self.t_max, self.chunk, self.device = timesteps, timesteps[-1], chunk, device
        self.snn = snn.eval().to(device)
        self.ann = ann.eval().to(device) if ann is not None else None
        self.diagnostics = diagnostics
        self.neurons = snn.neurons()
        self.counter = _OpCounter(snn) if count_ops else None
        self.idx = torch.tensor([t - 1 for t in timesteps])
        L, T = len(timesteps), self.t_max
        # layout of the totals vector: correct[L], spikes[T], synops[T], macs[T], layer spikes/sizes, counts
        self._sizes = [L, T, T, T, len(self.neurons), len(self.neurons), 1, 1, 1]
        self._tot = torch.zeros(sum(self._sizes), dtype=torch.float64)
        self.corr_acc: dict[str, list] = {n: [] for n in self.neurons}
        for m in self.neurons.values():
            m.count_spikes = True

    def _parts(self) -> list[Tensor]:
        return list(torch.split(self._tot, self._sizes))

    def totals(self) -> Tensor:
        return self._tot.clone()

    def set_totals(self, vec: Tensor) -> None:
        self._tot = vec.detach().to(torch.float64).cpu().clone()

    @property
    def images(self) -> int:
        return int(self._parts()[6].item())

    @torch.no_grad()
    def add_batch(self, x: Tensor, y: Tensor) -> None:
        snn, counter, t_max = self.snn, self.counter, self.t_max
        check_images(x, "test data", self.snn.config.get("input_shape"))
        x, y = x.to(self.device), y.to(self.device)
        B = x.shape[0]
        step = self.chunk or max(1, min(32, 512 // B))  # ~512 images per layer call: stays in CPU caches
        correct, spikes, synops, macs, lspk, lsize, n_img, ann_correct, ann_macs = self._parts()
        if float(ann_macs) == 0:
            ann_macs += _ann_macs(snn, x[:1])
        snn.reset_state()
        scores, done = [], 0
        while done < t_max:
            n = min(step, t_max - done)
            if counter:
                counter.start(snn, B, n)
            scores.append(snn(x, steps=n).argmax(-1))
            if counter:
                counter.stop()
                synops[done:done + n] += counter.synops
                macs[done:done + n] += counter.mac_steps
            done += n
        pred = torch.cat(scores)[self.idx.to(x.device)]  # [len(timesteps), B]
        correct += (pred == y.unsqueeze(0)).sum(1).double().cpu()
        for i, m in enumerate(self.neurons.values()):
            if m.spike_counts is not None:
                spikes += m.spike_counts.double().cpu()
                lspk[i] += float(m.spike_counts.sum())
                lsize[i] += m.rate_sum[0].numel() * B
        if self.ann is not None:
            ann_correct += int((self.ann(x).argmax(-1) == y).sum())
        if self.diagnostics:
            _collect_correlation(snn, self.neurons, x, t_max, self.corr_acc)
        n_img += B

    def close(self) -> None:
        for m in self.neurons.values():
            m.count_spikes = False
        if self.counter:
            self.counter.close()

    def result(self) -> SimulationResult:
        correct, spikes, synops, macs, lspk, lsize, n_img, ann_correct, ann_macs = self._parts()
        n_images, timesteps = int(n_img.item()), self.timesteps
        if n_images == 0:
            raise InputError("no images to simulate: the test data is empty; pass a DataLoader, Dataset or "
                             "tensors holding at least one labelled image")
        cum_spikes, cum_ops, cum_macs = spikes.cumsum(0), synops.cumsum(0), macs.cumsum(0)
        e_ann = float(ann_macs) * E_MAC_PJ
        acc = {t: float(correct[i]) / n_images for i, t in enumerate(timesteps)}
        spk = {t: float(cum_spikes[t - 1]) / n_images for t in timesteps}
        syn = {t: float(cum_ops[t - 1]) / n_images for t in timesteps}
        mac = {t: float(cum_macs[t - 1]) / n_images for t in timesteps}
        e_snn = {t: mac[t] * E_MAC_PJ + syn[t] * E_AC_PJ for t in timesteps}
        rates = {n: float(lspk[i]) / max(float(lsize[i]), 1.0) / self.t_max for i, n in enumerate(self.neurons)}
        corr = None
        if self.diagnostics:
            corr = {n: _pearson(torch.cat([p[0] for p in v]), torch.cat([p[1] for p in v]))
                    for n, v in self.corr_acc.items() if v}
        return SimulationResult(
            timesteps=timesteps, accuracy=acc, images=n_images, spikes_per_image=spk, synops_per_image=syn,
            snn_macs_per_image=mac, ann_macs_per_image=float(ann_macs), energy_snn_pj=e_snn, energy_ann_pj=e_ann,
            energy_ratio={t: (e_snn[t] / e_ann if e_ann else math.nan) for t in timesteps}, layer_rates=rates,
            ann_accuracy=(float(ann_correct) / n_images if self.ann is not None else None), correlation=corr)


@torch.no_grad()
def simulate(snn: SpikingNetwork, data, timesteps: list[int] | None = None, *, chunk: int | None = None,
             batch_size: int = 256, max_batches: int | None = None, ann: nn.Module | None = None,
             diagnostics: bool = False, device: str | torch.device = "cpu", progress: bool = True,
             count_ops: bool = True) -> SimulationResult:
    """Simulate ``snn`` on labelled ``data`` for ``max(timesteps)`` steps and measure it at every T.

    Args:
        data: DataLoader or Dataset of ``(x, y)``, or a tuple of tensors ``(x, y)``.
        timesteps: the T values to report (default: the recipe's).
        chunk: timesteps simulated per call (memory ~ chunk x batch); default ``512 // batch``, 1 to 32.
        ann: the original ANN, to report its accuracy on the same images.
        diagnostics: per-layer Pearson correlation between SNN rates at T_max and rate-model activations.
    """
    check_not_empty(data[0] if isinstance(data, (tuple, list)) else data, "test data")
    sim = Simulator(snn, timesteps or snn.timesteps, chunk=chunk, ann=ann, diagnostics=diagnostics,
                    count_ops=count_ops, device=device)
    loader = _as_loader(data, batch_size)
    try:
        total = len(loader) if max_batches is None else min(len(loader), max_batches)
    except TypeError:
        total = max_batches
    bar = tqdm(total=total, desc=f"simulate T={sim.t_max}", disable=not progress, leave=False)
    try:
        for b, batch in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            sim.add_batch(batch[0], batch[1])
            bar.update(1)
            bar.set_postfix(acc=f"{float(sim._parts()[0][-1]) / sim.images:.3f}")
    finally:
        bar.close()
        sim.close()
    return sim.result()


def _collect_correlation(snn, neurons, x, t_max, acc) -> None:
    """Pairs (SNN rate x amplitude, rate-model activation) per layer for the current batch."""
    snn_vals = {n: (m.rate_sum / t_max).flatten() for n, m in neurons.items() if m.rate_sum is not None}
    ann_vals: dict[str, Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: ann_vals.__setitem__(n, o.detach()))
             for n, m in neurons.items()]
    try:
        with rate_model(snn):
            snn.body(x)
    finally:
        for h in hooks:
            h.remove()
    for n, m in neurons.items():
        if n in snn_vals and n in ann_vals:
            amp = m.amplitude.to(ann_vals[n].dtype)
            amp_b = amp.reshape(()) if amp.numel() == 1 else amp.reshape((1, -1) + (1,) * (ann_vals[n].ndim - 2))
            rate_ann = (ann_vals[n] / amp_b).flatten()
            acc[n].append((snn_vals[n].cpu(), rate_ann.cpu()))


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def plot_accuracy(results: dict[str, SimulationResult], path: str | Path, ann_accuracy: float | None = None,
                  title: str = "") -> Path:
    """Accuracy vs T (log2 axis), one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        ax.plot(r.timesteps, [r.accuracy[t] for t in r.timesteps], marker="o", label=name)
    if ann_accuracy is not None:
        ax.axhline(ann_accuracy, ls="--", color="k", label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_correlation(result: SimulationResult, path: str | Path) -> Path:
    """Per-layer correlation between SNN rates and rate-model activations (diagnostics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corr = result.correlation or {}
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(corr)), 3.5))
    ax.bar(range(len(corr)), list(corr.values()))
    ax.set_xticks(range(len(corr)), list(corr), rotation=90, fontsize=6)
    ax.set_ylabel("corr(SNN rate, ANN activation)")
    ax.set_ylim(min(0, *corr.values()) if corr else 0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


__all__ = ["simulate", "Simulator", "SimulationResult", "plot_accuracy", "plot_correlation", "rate_model", "E_MAC_PJ", "E_AC_PJ"]
