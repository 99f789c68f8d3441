"""Lightning training on digits: accuracy, files, resume, MLflow, augmentation, DDP on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from zoo.augment import random_crop, random_hflip, resolve_augment
from zoo.data import PreparedData, prepare
from zoo.training import ResumableOneCycleLR, evaluate, load_trained, train

FAST = dict(batch_size=64, lr=0.05, optimizer="sgd", weight_decay=5e-4, label_smoothing=0.1, seed=0, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def prepared_digits(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    prepare("digits", out, calib_size=256, progress=False)
    return out


@pytest.mark.parametrize("arch", ["vgg_mini", "resnet_mini"])
def test_train_digits(arch, prepared_digits, tmp_path):
    out = tmp_path / arch
    meta = train(arch, {}, prepared_digits, out, epochs=8, **dict(FAST, lr=0.05 if arch == "vgg_mini" else 0.1))
    assert meta["test_accuracy"] >= 0.95, meta
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "meta.json", "model.safetensors"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["arch"] == arch and meta["epochs"] == 8 and meta["seed"] == 0 and meta["resumed_from_epoch"] == 0
    assert meta["num_classes"] == 10 and meta["input_shape"] == [1, 8, 8]
    assert meta["arch_kwargs"]["num_classes"] == 10 and meta["arch_kwargs"]["in_chans"] == 1
    assert meta["dataset_sha256"] == PreparedData(prepared_digits).sha256
    assert meta["dataset"]["normalization"]["mean"] == PreparedData(prepared_digits).mean
    assert meta["global_step"] == 8 * ((1437 - 144) // 64)  # 10 % validation, drop_last
    model = load_trained(out)
    assert not model.training
    assert evaluate(model, PreparedData(prepared_digits).test)["accuracy"] == pytest.approx(meta["test_accuracy"])
    assert [p.name for p in out.glob(".*")] == []


def test_resume(prepared_digits, tmp_path):
    out = tmp_path / "run"
    steps = (1437 - 144) // 64
    first = train("resnet_mini", {}, prepared_digits, out, epochs=2, **FAST)
    assert first["resumed_from_epoch"] == 0 and first["global_step"] == 2 * steps
    more = train("resnet_mini", {}, prepared_digits, out, epochs=4, **FAST)
    assert more["resumed_from_epoch"] == 2 and more["epochs"] == 4 and more["global_step"] == 4 * steps
    assert more["model_sha256"] != first["model_sha256"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sched = ckpt["lr_schedulers"][0]
    assert sched["total_steps"] == 4 * steps and sched["last_epoch"] == 4 * steps  # the schedule was stretched
    # nothing left to do: same result, no training
    same = train("resnet_mini", {}, prepared_digits, out, epochs=4, **FAST)
    assert same["resumed_from_epoch"] == 4 and same["global_step"] == 4 * steps
    assert same["model_sha256"] == more["model_sha256"]
    # other hyperparameters, or fewer epochs than done: start over
    other = train("resnet_mini", {}, prepared_digits, out, epochs=2, **dict(FAST, lr=0.07))
    assert other["resumed_from_epoch"] == 0 and other["global_step"] == 2 * steps
    fewer = train("resnet_mini", {}, prepared_digits, out, epochs=1, **dict(FAST, lr=0.07))
    assert fewer["resumed_from_epoch"] == 0 and fewer["global_step"] == steps


def test_channels_last(prepared_digits, tmp_path, monkeypatch):
    """NHWC is a runtime layout: batches and weights are channels-last, the checkpoint resumes under either
    layout, the written weights are plain NCHW, and the result is the contiguous run's up to summation order."""
    from safetensors.torch import load_file

    from zoo.training import ClassifierModule

    seen: list[bool] = []  # per step: are the weights of the convs with >1 input channel, k>1 NHWC (not NCHW)?
    step = ClassifierModule.training_step

    def spy(self, batch, batch_idx):
        assert batch[0].is_contiguous(memory_format=torch.channels_last)  # (1-channel digits: either layout)
        ws = [m.weight for m in self.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1
              and m.kernel_size != (1, 1)]
        seen.append(all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in ws))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", spy)
    plain = train("resnet_mini", {}, prepared_digits, tmp_path / "plain", epochs=2, **FAST)
    assert seen and not any(seen)
    seen.clear()
    nhwc = train("resnet_mini", {}, prepared_digits, tmp_path / "nhwc", epochs=2, channels_last=True, **FAST)
    assert seen and all(seen)
    assert abs(nhwc["test_accuracy"] - plain["test_accuracy"]) <= 0.01
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "nhwc" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].is_contiguous() and torch.allclose(a[k].float(), b[k].float(), atol=2e-3), k
    more = train("resnet_mini", {}, prepared_digits, tmp_path / "plain", epochs=3, channels_last=True, **FAST)
    assert more["resumed_from_epoch"] == 2 and more["epochs"] == 3


def _record_forward_dtypes(monkeypatch) -> list[torch.dtype]:
    """The dtype of every training step's forward output, appended as training runs."""
    from zoo.training import ClassifierModule

    dtypes: list[torch.dtype] = []
    step = ClassifierModule.training_step

    def spy(self, batch, batch_idx):
        dtypes.append(self.model(batch[0]).dtype)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", spy)
    return dtypes


def test_bf16_mixed_precision(prepared_digits, tmp_path, monkeypatch):
    """precision='bf16-mixed': forward under bfloat16 autocast, float32 weights and checkpoint, the test accuracy
    measured in float32 (as the converter sees the weights), close to a float32 run; a runtime setting, so a
    float32 checkpoint resumes under it."""
    from safetensors.torch import load_file

    from zoo import training

    dtypes = _record_forward_dtypes(monkeypatch)
    monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: True)  # bf16 as on an AVX512-BF16 CPU
    fp32 = train("resnet_mini", {}, prepared_digits, tmp_path / "fp32", epochs=6, **FAST)
    assert set(dtypes) == {torch.float32}
    dtypes.clear()
    bf16 = train("resnet_mini", {}, prepared_digits, tmp_path / "bf16", epochs=6, precision="bf16-mixed", **FAST)
    assert set(dtypes) == {torch.bfloat16} and bf16["precision"] == "bf16-mixed"
    weights = load_file(tmp_path / "bf16" / "model.safetensors")
    assert {v.dtype for k, v in weights.items() if v.is_floating_point()} == {torch.float32}
    ckpt = torch.load(tmp_path / "bf16" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert {v.dtype for v in ckpt["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    assert evaluate(load_trained(tmp_path / "bf16"), PreparedData(prepared_digits).test)["accuracy"] == \
        pytest.approx(bf16["test_accuracy"])
    assert bf16["test_accuracy"] >= 0.9 and abs(bf16["test_accuracy"] - fp32["test_accuracy"]) <= 0.03
    more = train("resnet_mini", {}, prepared_digits, tmp_path / "fp32", epochs=7, precision="bf16-mixed", **FAST)
    assert more["resumed_from_epoch"] == 6 and more["epochs"] == 7


def test_bf16_falls_back_to_float32_on_a_cpu_without_native_bf16(prepared_digits, tmp_path, monkeypatch, caplog):
    """Where oneDNN has no native bfloat16 (AVX2-only CPUs), bf16 autocast is many times slower than float32
    (bench/train_step.py: 11x for a ResNet-20 step), so training runs in float32, says so, and records it."""
    from zoo import training

    dtypes = _record_forward_dtypes(monkeypatch)
    monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="zoo.training"):
        meta = train("resnet_mini", {}, prepared_digits, tmp_path / "m", epochs=1, precision="bf16-mixed",
                     accelerator="cpu", **FAST)
    assert set(dtypes) == {torch.float32} and meta["precision"] == "32-true"
    assert "no native bfloat16" in caplog.text and "train.precision: 32-true" in caplog.text
    assert training._runnable_precision("16-mixed", "cpu") == "16-mixed"  # only bfloat16 is swapped


def test_deterministic(prepared_digits, tmp_path):
    a = train("resnet_mini", {}, prepared_digits, tmp_path / "a", epochs=1, **FAST)
    b = train("resnet_mini", {}, prepared_digits, tmp_path / "b", epochs=1, **FAST)
    assert a["model_sha256"] == b["model_sha256"]


def test_mlflow_logging(prepared_digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would show up here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    meta = train("vgg_mini", {"act": "relu6"}, prepared_digits, tmp_path / "run", epochs=2, tracking_uri=uri,
                 experiment="test-exp", **FAST)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == meta["mlflow_run_id"]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert {"train_loss_epoch", "train_acc", "val_loss", "val_acc", "test_acc", "test_loss"} <= set(run.data.metrics)
    assert run.data.metrics["test_acc"] == pytest.approx(meta["test_accuracy"])
    assert run.data.params["arch"] == "vgg_mini" and run.data.params["epochs"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "lightning_logs").exists()


def test_rejects_file_store(prepared_digits, tmp_path):
    with pytest.raises(ValueError, match="sqlite"):
        train("vgg_mini", {}, prepared_digits, tmp_path, epochs=1, tracking_uri="file:./mlruns", **FAST)
    with pytest.raises(ValueError, match="sqlite"):
        train("vgg_mini", {}, prepared_digits, tmp_path, epochs=1, tracking_uri="mlruns", **FAST)


def test_max_train_batches_and_adamw(prepared_digits, tmp_path):
    meta = train("vgg_mini", {"pool": "avg"}, prepared_digits, tmp_path, epochs=2, max_train_batches=3,
                 **dict(FAST, optimizer="adamw", lr=3e-3))
    assert meta["global_step"] == 6 and meta["optimizer"] == "adamw"


def test_augmentation():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert torch.equal(random_crop(x, 0), x)
    y = random_crop(x, 2)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each crop is some window of the padded image
        assert any(torch.equal(y[i], padded[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    f = random_hflip(x.repeat(50, 1, 1, 1))
    flipped = [torch.equal(f[i], x[i % 2].flip(2)) for i in range(100)]
    kept = [torch.equal(f[i], x[i % 2]) for i in range(100)]
    assert all(a or b for a, b in zip(flipped, kept)) and 20 < sum(flipped) < 80
    assert resolve_augment("auto", [3, 32, 32]) == ("crop_flip", 4)
    assert resolve_augment("auto", [1, 28, 28]) == ("shift", 2)
    assert resolve_augment("auto", [1, 8, 8]) == ("shift", 1)
    assert resolve_augment("none", [3, 32, 32]) == ("none", 0)


def test_resumable_one_cycle():
    p = torch.nn.Parameter(torch.zeros(1))
    short = ResumableOneCycleLR(torch.optim.SGD([p], lr=0.1, momentum=0.9), max_lr=0.1, total_steps=10)
    for _ in range(5):
        short.optimizer.step()
        short.step()
    long = ResumableOneCycleLR(torch.optim.SGD([p], lr=0.1, momentum=0.9), max_lr=0.1, total_steps=20)
    short_lr = short.get_last_lr()
    long.load_state_dict(short.state_dict())
    assert long.total_steps == 20 and long.last_epoch == 5 and long.get_last_lr() == short_lr
    fresh = ResumableOneCycleLR(torch.optim.SGD([p], lr=0.1, momentum=0.9), max_lr=0.1, total_steps=20)
    for _ in range(5):
        fresh.optimizer.step()
        fresh.step()
    lrs, want = [], []
    for _ in range(14):
        for s in (long, fresh):
            s.optimizer.step()
            s.step()  # would raise past 10 steps with the old total
        lrs.append(long.get_last_lr()[0])
        want.append(fresh.get_last_lr()[0])
    # from step 6 on, the learning rates are those of a 20-step run (past its peak), down to its minimum
    assert lrs == pytest.approx(want) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)


@pytest.mark.slow
def test_ddp_two_cpu_processes(prepared_digits, tmp_path):
    """strategy='ddp', devices=2 on CPU (gloo): Lightning re-runs this script for rank 1."""
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        from zoo.training import train
        meta = train("resnet_mini", {{}}, {str(prepared_digits)!r}, {str(tmp_path / "out")!r}, epochs=2, batch_size=64,
                     lr=0.1, optimizer="sgd", weight_decay=5e-4, label_smoothing=0.1, seed=0, accelerator="cpu",
                     devices=2, strategy="ddp", progress=False)
        rank = int(os.environ.get("LOCAL_RANK", 0))
        with open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w") as f:
            json.dump(meta, f)
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world_size"] == 2 and r1["world_size"] == 2
    assert r0["test_accuracy"] == r1["test_accuracy"]  # every rank evaluates the same, synchronized weights
    assert r0["global_step"] == 2 * ((1437 - 144) // 2 // 64)
    assert "model_sha256" in r0 and "model_sha256" not in r1  # only rank 0 writes
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["model_sha256"] == r0["model_sha256"]
    assert (tmp_path / "out" / "checkpoints" / "last.ckpt").is_file()


def test_stage_logging_prints_lightning_lines_once_without_tips(tmp_path):
    """Lightning prints through its own handler and the stages' root handler: each line once, no advertising
    tip, no deprecation warning Lightning raises under this torch."""
    import subprocess
    import sys

    script = tmp_path / "stage.py"
    script.write_text(
        "import lightning.pytorch as pl, torch\n"
        "from zoo.utils import setup_logging\n"
        "setup_logging()\n"
        "class M(pl.LightningModule):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.l = torch.nn.Linear(2, 2)\n"
        "    def predict_step(self, b, i): return self.l(b)\n"
        "pl.Trainer(logger=False, enable_progress_bar=False, accelerator='cpu', enable_checkpointing=False)"
        ".predict(M(), torch.utils.data.DataLoader(torch.zeros(4, 2), batch_size=2))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    assert text.count("GPU available") == 1, text
    assert "Tip" not in text and "LeafSpec" not in text, text
