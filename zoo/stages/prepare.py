"""Stage ``prepare@<dataset>``: a dataset from the data root (or scikit-learn's digits) into
``data/prepared/<dataset>/``."""
from __future__ import annotations

import logging

from zoo.config import Params
from zoo.stages.common import data_dir

log = logging.getLogger("zoo.stages")


def prepare(p: Params, dataset: str) -> None:
    from zoo.data import prepare as prepare_data

    cfg = p.datasets[dataset]
    fp = prepare_data(cfg.source, data_dir(dataset), root=p.data.root, download=p.data.download,
                      calib_size=cfg.calib_size, seed=cfg.seed, image_size=cfg.image_size)
    log.info("prepared %s: %s", dataset, {k: fp.get(k) for k in ("counts", "input_shape") if k in fp})
