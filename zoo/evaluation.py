"""SNN evaluation with PyTorch Lightning, so one call scales from a laptop to DDP over many processes/GPUs.

Each process simulates its own shard of the test set (a strided split, no padding: no image is counted
twice), the measurement sums of :class:`~zoo.simulation.Simulator` are added across processes, and global
rank 0 writes the result. With ``devices=1`` it is exactly :func:`zoo.simulate`.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from zoo.config import EVAL_STRATEGY_ERROR, relaunches_script
from zoo.inputs import check_not_empty
from zoo.simulation import SimulationResult, Simulator
from zoo.spiking.network import SpikingNetwork


EVAL_SUBSET_SEED = 0


def eval_subset(dataset: Dataset, n: int | None, seed: int = EVAL_SUBSET_SEED) -> Dataset:
    """The fixed evaluation subset of ``n`` images of ``dataset`` (all of it when ``n`` is None or too large).

    A seeded random choice, kept in the split's order: folder-backed splits are sorted by class, so the first
    ``n`` images would be one or two classes. The pipeline's evaluate stage and the CI re-check of published
    claims draw the same images for the same ``n``."""
    total = len(dataset)
    if n is None or n >= total:
        return dataset
    if n <= 0:
        raise ValueError(f"an evaluation subset needs n > 0 images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(total, generator=gen)[:n].sort().values
    return Subset(dataset, idx.tolist())


class _Shard(Sampler[int]):
    """Indices rank, rank + world, ... — every image exactly once over all ranks."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self) -> int:
        return len(self.idx)


class SNNEvaluator(pl.LightningModule):
    def __init__(self, snn: SpikingNetwork, dataset: Dataset, timesteps: list[int], batch_size: int = 256,
                 chunk: int | None = None, ann: nn.Module | None = None, out_file: str | None = None) -> None:
        super().__init__()
        self.snn, self.ann, self.dataset, self.batch_size = snn, ann, dataset, batch_size
        self.timesteps, self.chunk, self.out_file = list(timesteps), chunk, out_file
        self.sim: Simulator | None = None
        self.result: SimulationResult | None = None

    def test_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self._trainer is not None else 1
        return DataLoader(self.dataset, batch_size=self.batch_size,
                          sampler=_Shard(len(self.dataset), self.global_rank, world))

    def on_test_epoch_start(self) -> None:
        self.sim = Simulator(self.snn, self.timesteps, chunk=self.chunk, ann=self.ann, device=self.device)

    def test_step(self, batch, batch_idx: int) -> None:
        self.sim.add_batch(batch[0], batch[1])

    def on_test_epoch_end(self) -> None:
        sim = self.sim
        sim.close()
        vec = sim.totals().to(self.device)
        if self.trainer.world_size > 1:
            ann_macs = vec[-1].clone()
            vec = self.trainer.strategy.reduce(vec, reduce_op="sum")
            vec[-1] = ann_macs  # a per-image constant, not a sum
        sim.set_totals(vec)
        if self.trainer.is_global_zero:
            self.result = sim.result()
            if self.out_file:
                Path(self.out_file).write_text(json.dumps(self.result.to_dict()))


def evaluate_snn(snn: SpikingNetwork, dataset: Dataset, timesteps: list[int], *, batch_size: int = 256,
                 chunk: int | None = None, ann: nn.Module | None = None, accelerator: str = "cpu",
                 devices: int = 1, strategy: str = "auto", progress: bool = True) -> SimulationResult:
    """Simulate ``snn`` on ``dataset`` with a Lightning Trainer over ``devices`` processes."""
    if devices > 1 and strategy == "auto":
        strategy = "ddp_spawn"  # works from any entry point (tests, notebooks); 'ddp' re-runs the script
    if relaunches_script(strategy):
        raise ValueError(EVAL_STRATEGY_ERROR.format(strategy=strategy))
    check_not_empty(dataset, "test data")
    with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
        out = Path(tmp) / "result.json"
        module = SNNEvaluator(snn, dataset, timesteps, batch_size, chunk, ann, str(out))
        trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                             enable_checkpointing=False, enable_progress_bar=progress, use_distributed_sampler=False,
                             enable_model_summary=False, default_root_dir=tmp)
        trainer.test(module, verbose=False)
        data: dict[str, Any] = json.loads(out.read_text())
    return SimulationResult.from_dict(data)


__all__ = ["evaluate_snn", "eval_subset", "SNNEvaluator"]
