"""Stage ``train@<model>``: train the ANN (or a directly trained SNN) with Lightning into ``models/build/<model>/train/``."""
from __future__ import annotations

from zoo.config import Params
from zoo.stages.common import BUILD, data_dir, tracking_uri, train_dir
from zoo.utils import write_json


def train(p: Params, model: str) -> None:
    from zoo.training import train as train_model

    m = p.models[model]
    t = m.train
    init = {}
    if t.init_from:
        from zoo.hub import load as hub_load

        name, _, variant = t.init_from.partition(":")
        ann = hub_load(name, variant or None, ann=True)
        init = dict(init_from=ann, init_source=f"{name}:{ann.zoo_variant}@{ann.zoo_sha256}")
    meta = train_model(m.arch, m.arch_kwargs, data_dir(m.dataset), train_dir(model), epochs=t.epochs,
                       batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer, weight_decay=t.weight_decay,
                       label_smoothing=t.label_smoothing, seed=t.seed, augment=t.augment,
                       val_fraction=t.val_fraction, accelerator=t.accelerator, devices=t.devices,
                       strategy=t.strategy, num_workers=t.num_workers, channels_last=t.channels_last,
                       precision=t.precision, timesteps=t.timesteps, tracking_uri=tracking_uri(p),
                       experiment=f"{p.tracking.experiment}-train", run_name=model, **init)
    write_json(BUILD / model / "train.json", {"test_accuracy": meta["test_accuracy"], "epochs": meta.get("epochs")})
