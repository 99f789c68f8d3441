"""Shared fixtures: scikit-learn digits and two small nets trained on it in seconds."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn


def pytest_configure(config):
    # Under pytest-xdist (`make test` runs `-n 2`) the workers share the cores: one thread each, or the
    # OpenMP pools of two workers oversubscribe a 2-core machine and both run slower.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


def pytest_collection_modifyitems(config, items):
    """The slowest module (the DVC pipeline, ~15 min on 2 cores) first, so that xdist's `--dist loadfile`
    starts it at once and fills the other worker with everything else; serial runs are unaffected."""
    items.sort(key=lambda item: item.path.name != "test_pipeline.py")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run single-threaded: OpenMP threads only oversubscribe small shared machines."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits():
    """(x_train, y_train, x_test, y_test): 8x8 digits in [0, 1], stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    xtr, xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, ytr, xte, yte


class SmallCNN(nn.Module):
    """VGG-style: conv-BN-ReLU x2, max-pool, conv-BN-ReLU, avg-pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class SmallResNet(nn.Module):
    """ResNet-style: stem, an identity block and a downsampling block with a 1x1 projection."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.c1, self.b1 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c3, self.b3 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.c4, self.b4 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.proj = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        h = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(h)) + x)  # identity shortcut
        h = torch.relu(self.b3(self.c3(x)))
        x = torch.relu(self.b4(self.c4(h)) + self.proj(x))  # projection shortcut
        return self.fc(torch.flatten(self.pool(x), 1))


def train_digits(model: nn.Module, digits, epochs: int = 30, seed: int = 0) -> nn.Module:
    xtr, ytr, _, _ = digits
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=epochs * ((len(xtr) + 63) // 64))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def assert_spiking_types(snn, *, encoder: str, readout: str, neuron: str, reset: str, v_init: float) -> None:
    """The SNN's encoder, readout and neurons are the classes and settings these recipe fields name."""
    from zoo.spiking import AnalogEncoder, IFNode, LIFNode, MembraneReadout, PLIFNode, PoissonEncoder, \
        SoftmaxReadout, SpikeCountReadout
    from zoo.spiking.neuron import TSSLNode

    assert type(snn.encoder) is {"analog": AnalogEncoder, "poisson": PoissonEncoder}[encoder]
    assert type(snn.readout) is {"membrane": MembraneReadout, "spike_count": SpikeCountReadout,
                                 "softmax": SoftmaxReadout}[readout]
    neurons = list(snn.neurons().values())
    assert neurons and all(type(n) is {"if": IFNode, "lif": LIFNode, "plif": PLIFNode, "tssl": TSSLNode}[neuron]
                           for n in neurons)
    assert all((n.reset, n.v_init) == (reset, v_init) for n in neurons), (reset, v_init)


def bn_from_data(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The batch norms' running statistics from three passes over ``x`` (an untrained net's are the identity);
    returns the model in eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="session")
def digits_cnn(digits):
    torch.manual_seed(1)
    return train_digits(SmallCNN(), digits)


@pytest.fixture(scope="session")
def digits_resnet(digits):
    torch.manual_seed(2)
    return train_digits(SmallResNet(), digits)


def train_direct_digits(root, arch_kwargs: dict, timesteps: int, lr: float):
    """``plif_convnet`` with ``arch_kwargs`` trained directly on digits as an SNN of ``timesteps`` steps (8
    epochs, AdamW, seed 0) into ``root``: ``(train dir, PreparedData, meta)``."""
    from zoo.data import PreparedData, prepare
    from zoo.training import train

    prepare("digits", root / "data", calib_size=256, progress=False)
    meta = train("plif_convnet", arch_kwargs, root / "data", root / "train", epochs=8, batch_size=64, lr=lr,
                 optimizer="adamw", weight_decay=0.0, label_smoothing=0.0, val_fraction=0.0, timesteps=timesteps,
                 seed=0, progress=False)
    return root / "train", PreparedData(root / "data"), meta


def split_tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    """A prepared dataset's whole test split as ``(images, labels)`` tensors."""
    return (torch.stack([data.test[i][0] for i in range(len(data.test))]),
            torch.tensor([data.test[i][1] for i in range(len(data.test))]))


def assert_unrolled_onnx_parity(train_dir, data, timesteps: int, tmp_path) -> None:
    """A directly trained SNN unrolled over ``timesteps`` (the export stage's graph) matches torch in onnxruntime."""
    from zoo.export import check_parity, export_onnx
    from zoo.spiking import MultiStep
    from zoo.training import load_trained

    x, _ = split_tensors(data)
    net = MultiStep(load_trained(train_dir), timesteps).eval()
    export_onnx(net, x[:2], tmp_path / "snn.onnx")
    report = check_parity(net, tmp_path / "snn.onnx", x[:64])
    assert report["passed"] and report["argmax_agreement"] == 1.0, report
