"""Training the zoo's ANNs with PyTorch Lightning.

``train(arch, arch_kwargs, data_dir, out_dir, ...)`` trains ``timm.create_model(arch, **arch_kwargs)`` on a
prepared data directory (:func:`zoo.data.prepare`) and writes::

    <out_dir>/checkpoints/last.ckpt   Lightning checkpoint after every epoch (a rerun resumes from it)
    <out_dir>/model.safetensors       the timm model's state_dict (contiguous CPU tensors)
    <out_dir>/meta.json               arch, full arch_kwargs, classes, input shape, normalization, accuracy, ...

``load_trained(out_dir)`` rebuilds the model from meta.json and the weights.

Details:

* Loss: cross-entropy with label smoothing (validation and test losses without smoothing). Optimizer: SGD with
  Nesterov momentum or AdamW, no weight decay on biases and normalization parameters. Schedule: one-cycle
  (``torch.optim.lr_scheduler.OneCycleLR``, stepped per batch) over the whole run.
* Validation: ``val_fraction`` of the train split, drawn with ``seed``; the test split is only used once, at
  the end, for ``test_accuracy`` (computed exactly on the full test set by every rank, no sampler padding).
* Augmentation runs on the accelerator on whole batches (``on_after_batch_transfer``): random crop with 4 px
  zero padding + horizontal flip for RGB images of at least 32x32 (CIFAR), a random shift of up to
  ``max(1, H // 14)`` px (1 px on 8x8 digits, 2 px on MNIST) for other inputs, nothing with ``augment="none"``.
  Padding is in normalized space, i.e. with the mean colour.
* Resuming: if ``last.ckpt`` exists, was written with the same hyperparameters (everything but ``epochs`` and
  runtime settings such as devices or workers) and has not run more epochs than requested, training continues
  from it: a second call with more epochs trains only the missing ones. The one-cycle schedule is then
  stretched to the new total length (the learning rate continues from the new schedule's position), so a
  resumed 5 + 5 epoch run is not bit-identical to a fresh 10 epoch run. Otherwise training starts over (the
  reason is logged) and last.ckpt is overwritten.
* Memory format: ``channels_last=True`` keeps the model's 4-D weights and every batch in channels-last
  (NHWC) layout, which oneDNN / cuDNN convolutions run faster (``bench/train_step.py``). A runtime setting like
  ``devices``: it does not enter the hyperparameters, a checkpoint resumes under either layout, and
  model.safetensors is always written contiguous (NCHW), so the outputs differ only by summation order.
* Precision: ``precision="bf16-mixed"`` runs forward and backward under bfloat16 autocast (CPU or GPU) while
  weights, optimizer state and checkpoints stay float32; the test accuracy in meta.json is measured in float32,
  as the converter sees the weights. A runtime setting too: a checkpoint resumes under any precision. On a CPU
  without native bfloat16 (AVX2 only), where autocast runs many times slower, it trains in float32 instead,
  with a warning. meta.json records the precision used.
* Directly trained SNNs (``timesteps=T``): the model is an SNN body whose activations are spiking neurons
  (``act="plif"`` or ``"tssl"``); every batch runs it for T steps (:func:`zoo.spiking.multi_step`) and its mean output current
  is the logits, so the loss back-propagates through time with surrogate gradients. test_accuracy is the SNN's
  at T. Everything else (optimizer, schedule, resuming, MLflow, DDP) is as for an ANN.
* Starting point: ``init_from`` (a trained ANN, e.g. a published model's ANN from ``zoo.load(name, ann=True)``)
  gives the new model its weights and, for QCFS activations, thresholds at the source's activation
  percentiles (:func:`zoo.conversion.ann.init_from_ann`): a fine-tune instead of a training from scratch.
  ``init_source`` names it in the hyperparameters, so a checkpoint of another start is not resumed.
* Determinism: ``lightning.seed_everything(seed, workers=True)`` and deterministic algorithms (warn-only, as
  some CUDA backward kernels, e.g. adaptive average pooling, have no deterministic implementation).
* Distributed: works with ``strategy="ddp"`` (on CPU through gloo). Lightning's ddp launcher re-runs the calling
  script once per extra device, so call ``train`` from a script (or the ``zoo`` CLI), not from ``python -c``
  or a notebook. Only global rank 0 writes model.safetensors and meta.json; every rank returns the meta dict.
* MLflow: only when ``tracking_uri`` is given (e.g. ``sqlite:////abs/path/mlflow.db``); it is passed to
  Lightning's ``MLFlowLogger`` explicitly, so nothing falls back to ``file:./mlruns``. Each call makes one run
  (params = hyperparameters, metrics = train/val loss and accuracy, learning rate, test accuracy/loss).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.classification import MulticlassAccuracy

from zoo.augment import random_crop, random_hflip, resolve_augment
from zoo.data import PreparedData
from zoo.spiking.network import MultiStep, multi_step
from zoo.utils import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
CKPT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
# hyperparameters that do not change what a run computes: they may differ when resuming
_RESUME_IGNORED = ("epochs",)


# ------------------------------------------------------------------------------------------- helpers
def model_kwargs(arch: str, arch_kwargs: dict[str, Any] | None, num_classes: int,
                 input_shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """The complete kwargs for ``timm.create_model(arch, ...)``: ``arch_kwargs`` plus ``num_classes``,
    ``in_chans`` and (for the zoo's own architectures) ``img_size`` taken from the data unless given."""
    import zoo.models

    kw = dict(arch_kwargs or {})
    kw.setdefault("num_classes", int(num_classes))
    kw.setdefault("in_chans", int(input_shape[0]))
    if arch in zoo.models.ARCHS and len(input_shape) == 3:
        kw.setdefault("img_size", [int(input_shape[1]), int(input_shape[2])])
    return kw


class ResumableOneCycleLR(OneCycleLR):
    """``OneCycleLR`` whose length is that of the current run: loading a state (from a checkpoint of a shorter
    run) restores the position (step count, learning rates) but keeps this run's ``total_steps`` and phases."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        keep = {k: self.__dict__[k] for k in ("total_steps", "_schedule_phases") if k in self.__dict__}
        super().load_state_dict(state_dict)
        self.__dict__.update(keep)


# -------------------------------------------------------------------------------------------- module
class ClassifierModule(pl.LightningModule):
    """A timm-created classifier (``self.model``) with its loss, metrics, optimizer, schedule and augmentation.

    All constructor arguments are saved as hyperparameters (and in checkpoints); ``batch_size``, ``seed``,
    ``val_fraction``, ``max_train_batches`` and ``data_sha256`` are recorded only, to decide whether a
    checkpoint can be resumed.
    """

    def __init__(self, arch: str, arch_kwargs: dict[str, Any], num_classes: int, input_shape: list[int], *,
                 optimizer: str = "sgd", lr: float = 0.1, weight_decay: float = 5e-4, momentum: float = 0.9,
                 label_smoothing: float = 0.1, augment: str = "auto", pct_start: float = 0.25,
                 batch_size: int | None = None, seed: int | None = None, val_fraction: float | None = None,
                 max_train_batches: int | float | None = None, data_sha256: str | None = None,
                 init_source: str | None = None, timesteps: int | None = None) -> None:
        super().__init__()
        import zoo.models  # noqa: F401  (registers the zoo's architectures)

        optimizer = optimizer.lower()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r} is not one of {OPTIMIZERS}")
        arch_kwargs = model_kwargs(arch, arch_kwargs, num_classes, input_shape)
        input_shape = [int(v) for v in input_shape]
        self.save_hyperparameters(dict(arch=arch, arch_kwargs=arch_kwargs, num_classes=int(num_classes),
                                       input_shape=input_shape, optimizer=optimizer, lr=float(lr),
                                       weight_decay=float(weight_decay), momentum=float(momentum),
                                       label_smoothing=float(label_smoothing), augment=augment,
                                       pct_start=float(pct_start), batch_size=batch_size, seed=seed,
                                       val_fraction=val_fraction, max_train_batches=max_train_batches,
                                       data_sha256=data_sha256, init_source=init_source,
                                       **({"timesteps": int(timesteps)} if timesteps else {})))
        self.model = timm.create_model(arch, **arch_kwargs)
        if timesteps and not any(hasattr(m, "reset_state") for m in self.model.modules()):
            raise ValueError(f"timesteps={timesteps} trains a spiking net directly, but {arch} with {arch_kwargs} has "
                             "no spiking neurons: build it with act='plif' or 'tssl' (e.g. arch plif_convnet), or drop timesteps")
        self.augment_mode, self.augment_pad = resolve_augment(augment, input_shape)
        self.channels_last = False  # runtime setting (see train()), not a hyperparameter
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        T = self.hparams.get("timesteps")
        return multi_step(self.model, x, T) if T else self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if self.trainer is not None and self.trainer.training and self.augment_mode != "none":
            x = random_crop(x, self.augment_pad)
            if self.augment_mode == "crop_flip":
                x = random_hflip(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.train_acc(logits.detach(), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y),
                 sync_dist=True)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = ResumableOneCycleLR(opt, max_lr=hp.lr, total_steps=total, pct_start=hp.pct_start,
                                    cycle_momentum=hp.optimizer == "adamw" or hp.momentum > 0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}


# ------------------------------------------------------------------------------------------ evaluation
@torch.inference_mode()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 512,
             device: torch.device | str | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` (in eval mode) over a whole dataset."""
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, total, loss = 0, 0, 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return {"accuracy": correct / max(1, total), "loss": loss / max(1, total), "count": total}


# ---------------------------------------------------------------------------------------------- files
def _json_norm(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _resume_decision(ckpt: Path, hparams: dict[str, Any], epochs: int) -> tuple[int, str]:
    """(epochs done in ``ckpt`` if training can resume from it else 0, the reason)."""
    if not ckpt.is_file():
        return 0, "no checkpoint"
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)  # our own file; tensors and plain data only
    except Exception as err:  # noqa: BLE001  (truncated or foreign file: start over)
        return 0, f"unreadable checkpoint ({err})"
    old = {k: v for k, v in dict(state.get("hyper_parameters", {})).items() if k not in _RESUME_IGNORED}
    new = {k: v for k, v in hparams.items() if k not in _RESUME_IGNORED}
    if _json_norm(old) != _json_norm(new):
        diff = sorted(k for k in set(old) | set(new) if _json_norm(old.get(k)) != _json_norm(new.get(k)))
        return 0, f"hyperparameters differ ({', '.join(diff)})"
    done = int(state.get("epoch", -1)) + 1
    if done < 1:
        return 0, "checkpoint holds no completed epoch"
    if done > epochs:
        return 0, f"checkpoint has {done} epochs, more than the {epochs} requested"
    return done, f"resuming after epoch {done}"


def _check_tracking_uri(uri: str) -> str:
    uri = str(uri)
    if uri.startswith("file:") or "://" not in uri and not uri.startswith("databricks"):
        raise ValueError(f"tracking_uri={uri!r}: MLflow's file store is deprecated (and raises in MLflow >= 3.13); "
                         "pass a database URI such as 'sqlite:////abs/path/mlflow.db' or a server 'http://host:5000'")
    return uri


def write_trained(out_dir: str | Path, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.safetensors`` then ``meta.json`` (with the weights' sha256) atomically; returns meta."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        # one metadata key only: safetensors writes several in hash order, so the bytes would vary run to run
        save_file(state, str(tmp), metadata={"format": "pt"})
    meta = dict(meta, model_file=MODEL_FILE, model_sha256=sha256_file(out_dir / MODEL_FILE))
    write_json(out_dir / META_FILE, meta)
    return meta


def load_trained(out_dir: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model: ``timm.create_model(meta['arch'], **meta['arch_kwargs'])`` with the weights of
    ``model.safetensors``, in eval mode. ``model.zoo_meta`` holds meta.json (classes, normalization, ...)."""
    import zoo.models  # noqa: F401

    out_dir = Path(out_dir)
    meta_path = out_dir / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {out_dir} holds no trained model (run zoo.training.train)")
    meta = json.loads(meta_path.read_text())
    model = timm.create_model(meta["arch"], **meta["arch_kwargs"])
    weights = out_dir / meta.get("model_file", MODEL_FILE)
    try:
        model.load_state_dict(load_file(str(weights), device=str(map_location)))
    except RuntimeError as err:  # another architecture's (or width's) weights
        from zoo.serialization import CheckpointError

        raise CheckpointError(f"{weights}: these weights do not fit {meta['arch']} with {meta['arch_kwargs']}, the "
                              f"architecture that {out_dir / META_FILE} names ({str(err).splitlines()[0]} ...); "
                              "the two files come from different trainings: train again into this folder "
                              "(dvc repro train@<model>) or restore the pair together") from err
    model.zoo_meta = meta
    return model.to(map_location).eval()


# ---------------------------------------------------------------------------------------------- train
def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 / AMX, or AVX512 emulation)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: let Lightning decide
        return True


def _runnable_precision(precision: str | int | None, accelerator: str) -> str | int | None:
    """``precision``, or ``"32-true"`` where it asks for bfloat16 on a CPU that has no native bfloat16: there
    autocast falls back to reference kernels (measured: a ResNet-20 step 11x slower than float32 on an AVX2-only
    AMD EPYC), while float32 trains the same model. Like ``channels_last``, precision is a runtime setting, so
    the fallback changes no hyperparameter and resumes any checkpoint."""
    if not str(precision).startswith("bf16"):
        return precision
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()
                                      and not torch.backends.mps.is_available())
    if on_cpu and not _cpu_has_native_bf16():
        log.warning("precision=%r: this CPU (%s) has no native bfloat16, where autocast runs many times slower "
                    "than float32; training in float32 instead (set train.precision: 32-true to silence this)",
                    precision, torch.backends.cpu.get_cpu_capability())
        return "32-true"
    return precision


def _split(train: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """The training split and a seeded validation split of ``val_fraction`` of it (None for 0)."""
    n = len(train)
    n_val = int(round(n * val_fraction))
    if n_val == 0:
        return train, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(train, sorted(perm[n_val:])), Subset(train, sorted(perm[:n_val]))


def _trainer(out_dir: Path, ckpt_dir: Path, *, arch: str, epochs: int, accelerator: str, devices: Any,
             strategy: str, precision: str | int | None, progress: bool, max_train_batches: Any, steps: int | None,
             validate: bool, tracking_uri: str | None, experiment: str, run_name: str | None,
             resume_epoch: int) -> tuple[pl.Trainer, Any]:
    """The Lightning trainer (checkpoint every epoch, MLflow logging where ``tracking_uri`` is set) and its
    logger (False without tracking)."""
    logger: Any = False
    # save_top_k=1 without a monitor: one file, "last.ckpt", rewritten at the end of every training epoch
    # (save_last=True with save_top_k=0 would only write it when training ends)
    callbacks: list[Any] = [ModelCheckpoint(dirpath=ckpt_dir, filename=LAST_CKPT[:-5], monitor=None, save_top_k=1,
                                            save_last=False, every_n_epochs=1, save_on_train_epoch_end=True,
                                            enable_version_counter=False)]
    if tracking_uri is not None:
        from lightning.pytorch.loggers import MLFlowLogger

        logger = MLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri, run_name=run_name or arch,
                              tags={"arch": arch, "out_dir": str(out_dir), "resumed_from_epoch": str(resume_epoch)})
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy,
                         precision=precision, logger=logger, callbacks=callbacks, enable_progress_bar=progress,
                         enable_model_summary=progress, deterministic="warn", default_root_dir=out_dir,
                         limit_train_batches=max_train_batches, num_sanity_val_steps=0,
                         log_every_n_steps=max(1, min(50, steps or 50)), limit_val_batches=None if validate else 0)
    return trainer, logger


def _fit(trainer: pl.Trainer, module: pl.LightningModule, train_loader: DataLoader, val_loader: DataLoader | None,
         ckpt_path: str | None) -> None:
    """``trainer.fit`` with TF32 matmuls on CUDA while training only, and Lightning's notices that do not apply
    here silenced."""
    matmul_precision = torch.get_float32_matmul_precision()
    if trainer.accelerator.__class__.__name__ == "CUDAAccelerator":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls while training, not for what runs after
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=False)
    finally:
        torch.set_float32_matmul_precision(matmul_precision)


_QUIET = (".*does not have many workers.*", ".*number of training batches.*is smaller than the logging interval.*",
          ".*Checkpoint directory .* exists and is not empty.*",
          ".*You defined a `validation_step` but have no `val_dataloader`.*")


def _meta(module: ClassifierModule, data: PreparedData, trainer: pl.Trainer, test: dict[str, Any],
          resume_epoch: int, model: nn.Module, **recipe: Any) -> dict[str, Any]:
    """meta.json: the architecture, the data it was trained on, the test split's score and the training recipe."""
    val_acc = trainer.callback_metrics.get("val_acc")
    r = recipe
    return {
        "arch": r["arch"],
        "arch_kwargs": dict(module.hparams.arch_kwargs),
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "classes": data.classes,
        "dataset": {"source": data.source, "sha256": data.sha256, "normalization":
                    {"mean": data.mean, "std": data.std, "scale": data.fingerprint.get("scale", 1.0)}},
        "dataset_sha256": data.sha256,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "val_accuracy": float(val_acc) if val_acc is not None else None,
        "epochs": int(trainer.current_epoch),
        "resumed_from_epoch": resume_epoch,
        "global_step": int(trainer.global_step),
        "seed": r["seed"],
        "optimizer": module.hparams.optimizer,
        "lr": r["lr"],
        "momentum": r["momentum"],
        "weight_decay": r["weight_decay"],
        "label_smoothing": r["label_smoothing"],
        "batch_size": r["batch_size"],
        "augment": f"{module.augment_mode}:{module.augment_pad}",
        "val_fraction": r["val_fraction"],
        "init_source": r["init_source"],
        "max_train_batches": r["max_train_batches"],
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "versions": {"torch": torch.__version__.split("+")[0], "timm": timm.__version__,
                     "lightning": pl.__version__},
    }


def train(arch: str, arch_kwargs: dict[str, Any] | None, data_dir: str | Path, out_dir: str | Path, *,
          epochs: int = 10, batch_size: int = 128, lr: float = 0.1, optimizer: str = "sgd",
          weight_decay: float = 5e-4, label_smoothing: float = 0.1, seed: int = 0,
          tracking_uri: str | None = None, experiment: str = "snn-zoo", accelerator: str = "auto",
          devices: int | str | list[int] = 1, strategy: str = "auto", num_workers: int = 0,
          max_train_batches: int | float | None = None, progress: bool = True, momentum: float = 0.9,
          augment: str = "auto", val_fraction: float = 0.1, precision: str | int | None = None,
          run_name: str | None = None, channels_last: bool = False, init_from: nn.Module | None = None,
          init_source: str | None = None, timesteps: int | None = None) -> dict[str, Any]:
    """Train ``arch`` on the prepared data in ``data_dir``; write checkpoints, weights and meta.json to
    ``out_dir`` (see the module docstring) and return the meta dict. ``init_from``: a trained ANN to start
    from (``init_source`` names it). ``timesteps``: train a spiking ``arch`` directly as an SNN of T steps."""
    import zoo.models  # noqa: F401

    out_dir = Path(out_dir).absolute()
    ckpt_dir = out_dir / CKPT_DIR
    if tracking_uri is not None:
        tracking_uri = _check_tracking_uri(tracking_uri)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pl.seed_everything(seed, workers=True, verbose=False)
    data = PreparedData(data_dir)
    train_set, val_set = _split(data.train, val_fraction, seed)

    module = ClassifierModule(arch, arch_kwargs or {}, data.num_classes, list(data.input_shape),
                              optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
                              label_smoothing=label_smoothing, augment=augment, batch_size=batch_size, seed=seed,
                              val_fraction=val_fraction, max_train_batches=max_train_batches,
                              data_sha256=data.sha256, init_source=init_source, timesteps=timesteps)
    if init_from is not None:  # a resumed run overwrites this with its checkpoint's weights
        from zoo.conversion.ann import init_from_ann

        if init_source is None:
            raise ValueError("init_from needs init_source, the name of the weights it starts from")
        init_from_ann(module.model, init_from, data.calibration)
    if channels_last:
        module.channels_last = True
        module.model.to(memory_format=torch.channels_last)
    resume_epoch, reason = _resume_decision(ckpt_dir / LAST_CKPT, dict(module.hparams), epochs)
    if (ckpt_dir / LAST_CKPT).exists():
        log.warning("%s: %s", ckpt_dir / LAST_CKPT, reason if resume_epoch else f"starting over: {reason}")

    loader_kw: dict[str, Any] = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                              drop_last=len(train_set) > batch_size, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=max(batch_size, 256), shuffle=False, **loader_kw) \
        if val_set is not None else None

    precision = _runnable_precision(precision, accelerator)
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", pattern)
        trainer, logger = _trainer(
            out_dir, ckpt_dir, arch=arch, epochs=epochs, accelerator=accelerator, devices=devices,
            strategy=strategy, precision=precision, progress=progress, max_train_batches=max_train_batches,
            steps=len(train_loader) if max_train_batches is None else None, validate=val_set is not None,
            tracking_uri=tracking_uri, experiment=experiment, run_name=run_name, resume_epoch=resume_epoch)
        _fit(trainer, module, train_loader, val_loader, str(ckpt_dir / LAST_CKPT) if resume_epoch else None)

    model = module.model
    # Lightning's teardown leaves the module on the CPU: the test split is scored on the training device
    device = trainer.strategy.root_device
    test = evaluate(MultiStep(model.to(device), timesteps) if timesteps else model.to(device), data.test,
                    batch_size=max(batch_size, 256), device=device)
    model.cpu()
    meta = _meta(module, data, trainer, test, resume_epoch, model, arch=arch, seed=seed, lr=lr, momentum=momentum,
                 weight_decay=weight_decay, label_smoothing=label_smoothing, batch_size=batch_size,
                 val_fraction=val_fraction, init_source=init_source, max_train_batches=max_train_batches)
    if timesteps:
        meta["timesteps"] = int(timesteps)
    if logger:
        meta["mlflow_run_id"] = logger.run_id
    if trainer.is_global_zero:
        meta = write_trained(out_dir, model, meta)
        if logger:
            logger.log_metrics({"test_acc": test["accuracy"], "test_loss": test["loss"]}, step=trainer.global_step)
            logger.log_hyperparams({"epochs": epochs})
    return meta


__all__ = ["ClassifierModule", "train", "load_trained", "evaluate", "write_trained", "model_kwargs",
           "random_crop", "random_hflip", "ResumableOneCycleLR"]
