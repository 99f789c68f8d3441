"""Stage ``calibrate@<model>``: the ANN's activation statistics on the calibration images."""
from __future__ import annotations

from zoo.config import Params
from zoo.stages.common import calib_file, data_dir, train_dir


def calibrate(p: Params, model: str) -> None:
    from torch.utils.data import DataLoader

    from zoo.conversion.calibration import calibrate as run_calibration
    from zoo.conversion.graph import canonicalize
    from zoo.data import PreparedData
    from zoo.training import load_trained

    m = p.models[model]
    ann = load_trained(train_dir(model))
    data = PreparedData(data_dir(m.dataset))
    stats = run_calibration(canonicalize(ann), DataLoader(data.calibration, batch_size=256))
    stats.save(calib_file(model))
