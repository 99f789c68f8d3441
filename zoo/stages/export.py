"""Stage ``export@<model>``: the trained ANN to ONNX, checked against PyTorch with onnxruntime. A directly trained
SNN (``train.timesteps``) is exported unrolled over its training T: images in, mean output current out."""
from __future__ import annotations

from zoo.config import Params
from zoo.stages.common import data_dir, onnx_dir, train_dir
from zoo.utils import write_json


def export(p: Params, model: str) -> None:
    import torch

    from zoo.data import PreparedData
    from zoo.export import check_parity, export_onnx
    from zoo.spiking.network import MultiStep
    from zoo.training import load_trained

    m = p.models[model]
    ann = load_trained(train_dir(model))
    if ann.zoo_meta.get("timesteps"):
        ann = MultiStep(ann, ann.zoo_meta["timesteps"]).eval()
    test = PreparedData(data_dir(m.dataset)).test
    x = torch.stack([test[i][0] for i in range(min(64, len(test)))])
    out = onnx_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(ann, x[:2], out / "model.onnx")
    report = check_parity(ann, out / "model.onnx", x)
    write_json(out / "parity.json", report)
    if not report["passed"]:
        raise SystemExit(f"ONNX parity check failed for {model}: max |logit difference| "
                         f"{report['max_abs_diff']:.3g} (see {out / 'parity.json'})")
