"""Stage ``convert-<zoo>@<model>-<variant>``: the ANN to an SNN checkpoint by one variant's recipe."""
from __future__ import annotations

from zoo.config import Params
from zoo.stages.common import calib_file, data_dir, read_meta, snn_file, train_dir
from zoo.utils import sha256_file, write_json


def variant_timesteps(p: Params, variant: str, zoo: str) -> list[int]:
    """The T ladder a variant is converted (and so evaluated) with: the zoo's, or the longer one the variant
    declares (``variants.<v>.overrides.timesteps``) where that one extends the zoo's past its end (Diehl et al.'s
    0.5 s presentation); where the zoo's ladder was changed so that the declared one no longer extends it, the
    zoo's ladder holds."""
    ts = p.evaluation_for(zoo).timesteps
    declared = sorted(set(p.variants[variant].overrides.get("timesteps") or []))
    return declared if len(declared) > len(ts) and declared[:len(ts)] == sorted(ts) else list(ts)


def convert(p: Params, model: str, variant: str) -> None:
    import torch

    from zoo.conversion.calibration import ActivationStats
    from zoo.conversion.converter import convert_prepared
    from zoo.data import PreparedData
    from zoo.serialization import read_config, save_snn
    from zoo.training import load_trained

    m = p.models[model]
    zoo = p.zoo_of(model)
    meta = read_meta(model)
    ann = load_trained(train_dir(model))
    data = PreparedData(data_dir(m.dataset))
    recipe = p.recipe(variant, zoo)
    recipe = recipe.override(timesteps=variant_timesteps(p, variant, zoo))
    config = {"arch": meta["arch"], "arch_kwargs": meta["arch_kwargs"], "model": model, "dataset": m.dataset,
              "classes": data.classes, "preprocess": {"mean": data.mean, "std": data.std},
              "ann_sha256": meta.get("model_sha256")}
    snn = convert_prepared(ann, data, recipe, stats=ActivationStats.load(calib_file(model)), config=config)
    out = snn_file(zoo, model, variant)
    # a variant whose values overflow the zoo's dtype (model-based bounds in float16) is stored in float32
    save_snn(snn, out, dtype=getattr(torch, p.zoos[zoo].dtype), dtype_fallback=torch.float32)
    thresholds = {n: float(m_.threshold.max()) for n, m_ in snn.neurons().items()}
    write_json(out.with_suffix(".json"), {**snn.config, "dtype": read_config(out)["dtype"],
                                          "max_threshold_per_layer": thresholds,
                                          "checkpoint_sha256": sha256_file(out)})
