"""Core commands: list and show conversion variants; convert a model ad hoc; export a spiking model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from zoo.cli import app, fail
from zoo.conversion.variants import DEFAULT_TIMESTEPS


def _fail(msg: str) -> None:  # every error of these commands is bad input
    fail(msg, 2)


@app.command("variants")
def list_variants(name: Optional[str] = typer.Argument(None, help="show one variant's full recipe"),
                  as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the named conversion variants (or show one recipe with every field)."""
    from zoo.conversion.variants import VariantError, get_variant, variants

    if name:
        try:
            r = get_variant(name)
        except VariantError as err:
            _fail(str(err))
        if as_json:
            typer.echo(json.dumps(r.model_dump(), indent=2))
            return
        helps = r.field_help()
        for k, v in r.model_dump().items():
            typer.echo(f"{k:>20}: {v!s:<30} {helps.get(k, '')}")
        return
    vs = variants()
    if as_json:
        typer.echo(json.dumps({k: v.model_dump() for k, v in vs.items()}, indent=2))
        return
    for k, v in vs.items():
        typer.echo(f"{k:<18} {v.reference}\n{'':<18} {v.description}")


def _recipe_overrides(items: list[str]) -> dict:
    """``--set FIELD=VALUE`` options as recipe overrides (numbers, booleans and lists parse; text stays text)."""
    import yaml

    overrides = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set {item!r}: use FIELD=VALUE, e.g. --set percentile=99.99")
        overrides[k.strip()] = yaml.safe_load(v)
    return overrides


def _timesteps(text: str) -> list[int]:
    try:
        ts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        ts = []
    if not ts or ts[0] < 1:
        _fail(f"--timesteps {text!r}: give comma-separated positive integers, e.g. 8,32,128")
    return ts


def _load_ann(model: str, weights: Optional[Path], num_classes: int):
    """The ANN to convert, with its architecture and kwargs: a trained-model directory or a timm architecture
    (with ``--weights``)."""
    import timm

    import zoo.models  # noqa: F401 - registers the zoo's architectures with timm

    if weights is not None and weights.suffix != ".safetensors":
        _fail(f"--weights {weights}: must be a .safetensors file (nothing is unpickled)")
    if weights is not None and not weights.is_file():
        _fail(f"--weights {weights}: no such file")
    if Path(model).is_dir():
        from zoo.serialization import CheckpointError
        from zoo.training import load_trained

        try:
            ann = load_trained(model)
        except (FileNotFoundError, CheckpointError) as err:
            _fail(str(err))
        return ann, ann.zoo_meta["arch"], ann.zoo_meta["arch_kwargs"]
    if not timm.is_model(model):
        import difflib

        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        _fail(f"{model!r} is neither a trained-model directory (meta.json + model.safetensors) nor a timm "
              f"architecture" + (f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"))
    arch_kwargs = {"num_classes": num_classes}
    ann = timm.create_model(model, **arch_kwargs)
    if weights is not None:
        from safetensors.torch import load_file

        try:
            ann.load_state_dict(load_file(str(weights)))
        except RuntimeError as err:  # missing / unexpected keys, shape mismatches
            _fail(f"--weights {weights} do not fit {model} (num_classes={num_classes}): {err}")
    return ann.eval(), model, arch_kwargs


@app.command("convert")
def convert_cmd(
    model: str = typer.Argument(..., help="a timm architecture name, or a trained-model directory (meta.json + "
                                          "model.safetensors, as written by the train stage)"),
    out: Path = typer.Option(..., "--out", "-o", help="the SNN checkpoint to write (.safetensors)"),
    variant: str = typer.Option("rueckauer2017", help="conversion variant (zoo variants)"),
    dataset: str = typer.Option("digits", help="dataset source for calibration and evaluation: digits, mnist, "
                                               "cifar10, imagenet"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $ZOO_DATA_DIR)"),
    weights: Optional[Path] = typer.Option(None, help="safetensors weights for a timm architecture"),
    num_classes: int = typer.Option(10),
    calib_images: int = typer.Option(1000, help="training images drawn for the activation statistics (the "
                                                "pipeline's datasets.<name>.calib_size)"),
    timesteps: str = typer.Option(",".join(map(str, DEFAULT_TIMESTEPS)), help="comma-separated T values to evaluate"),
    test_images: int = typer.Option(1000, help="test images to evaluate (0: skip evaluation)"),
    set_: list[str] = typer.Option([], "--set", help="recipe override, e.g. --set percentile=99.99"),
) -> None:
    """Convert a model outside the pipeline, as its convert stage does: calibrate, convert, save, measure."""
    import tempfile

    import torch

    import zoo
    from zoo.conversion.converter import convert_prepared
    from zoo.conversion.variants import VariantError, get_variant
    from zoo.data import DataNotFoundError, PreparedData, prepare
    from zoo.inputs import InputError
    from zoo.serialization import save_snn

    overrides = _recipe_overrides(set_)
    try:  # everything that can be checked is checked before the data is prepared
        get_variant(variant, **overrides)
    except VariantError as err:
        _fail(str(err) + (" (--set FIELD=VALUE)" if overrides else ""))
    if out.suffix != ".safetensors":
        _fail(f"--out {out}: an SNN checkpoint is a .safetensors file, e.g. --out {out.with_suffix('.safetensors')}")
    ts = _timesteps(timesteps)
    ann, arch, arch_kwargs = _load_ann(model, weights, num_classes)
    with tempfile.TemporaryDirectory(prefix="zoo-convert-") as tmp:
        try:
            prepare(dataset, tmp, root=data_root, calib_size=calib_images, progress=True)
        except (DataNotFoundError, ValueError) as err:  # a missing data root, an unknown source
            _fail(f"--dataset {dataset}: {err}")
        data = PreparedData(tmp)
        trained_on = getattr(ann, "zoo_meta", {}).get("input_shape")
        if trained_on is not None and tuple(trained_on) != data.input_shape:
            _fail(f"--dataset {dataset}: its images are {list(data.input_shape)}, but {model} was trained on "
                  f"{list(trained_on)} images ({(ann.zoo_meta.get('dataset') or {}).get('source', 'another dataset')}); "
                  "pass the dataset it was trained on")
        config = {"arch": arch, "arch_kwargs": arch_kwargs, "preprocess": {"mean": data.mean, "std": data.std}}
        try:
            snn = convert_prepared(ann, data, variant, config=config, progress=True, **overrides)
        except InputError as err:
            _fail(f"--dataset {dataset}: {err}")
        save_snn(snn, out)
        typer.echo(f"wrote {out}")
        if test_images:
            test = torch.utils.data.Subset(data.test, range(min(test_images, len(data.test))))
            typer.echo(zoo.simulate(snn, test, ts, ann=ann).table())


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="a published model's name (zoo list) or an SNN checkpoint (.safetensors)"),
    out: Path = typer.Option(..., "--out", "-o", help="the file to write: .onnx or .nir"),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help="a published model's variant (default: "
                                                                        "its default variant)"),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="onnx: one timestep with explicit state, "
                                         "to loop T times (zoo.interchange.onnx.run_snn_onnx); nir: the "
                                         "Neuromorphic Intermediate Representation (zoo.load_nir reads it back). "
                                         "Default: from the suffix of --out"),
) -> None:
    """Export a spiking model to run it in another runtime (onnxruntime, snnTorch, Norse, Sinabs, ...)."""
    from zoo.export import ExportError
    from zoo.interchange import export_snn, snn_format

    try:
        format = snn_format(out, format)
    except ValueError as err:
        _fail(f"--out/--format: {err}")
    from zoo.hub import HubError
    from zoo.serialization import CheckpointError

    if model.endswith(".safetensors") and not Path(model).is_file():
        _fail(f"{model}: no such checkpoint")
    try:
        path = export_snn(model, out, format=format, variant=variant)
    except (HubError, CheckpointError, ValueError) as err:
        _fail(str(err))
    except (NotImplementedError, ExportError) as err:  # a recipe the format cannot express
        fail(f"{model}: {err}", 1)
    if format == "nir":
        typer.echo(f"wrote {path}: read it back with zoo.load_nir({str(path)!r}), or in snnTorch, Norse, Sinabs")
    else:
        typer.echo(f"wrote {path}: run it T steps with zoo.interchange.onnx.run_snn_onnx({str(path)!r}, images, T)")


@app.command("import")
def import_cmd(
    source: Path = typer.Argument(..., help="a .nir file (zoo export -o F.nir writes one)"),
    out: Path = typer.Option(..., "--out", "-o", help="the SNN checkpoint to write (.safetensors)"),
) -> None:
    """Import a NIR graph as an SNN checkpoint that zoo simulate, zoo export and zoo.load_snn read."""
    from zoo.interchange.nir import NIRImportError, load_nir
    from zoo.serialization import CheckpointError, save_snn

    if not source.is_file():
        _fail(f"{source}: no such file")
    if out.suffix != ".safetensors":
        _fail(f"--out {out}: a checkpoint ends in .safetensors, e.g. --out {out.with_suffix('.safetensors')}")
    try:
        snn = load_nir(source)
        save_snn(snn, out)
    except (NIRImportError, CheckpointError, OSError) as err:
        _fail(f"{source}: {err}")
    typer.echo(f"wrote {out}")
