"""Pipeline commands: validate params.yaml, run the demo / full zoo, query MLflow for the best variant."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import typer

from zoo.cli import app
from zoo.cli import fail as _fail


def _params(path: str):
    from zoo.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as err:
        _fail(str(err), 2)


@app.command()
def validate(params: str = typer.Option("params.yaml", help="the parameters file")) -> None:
    """Validate params.yaml (keys, names, values, cross references) without running anything."""
    p = _params(params)
    typer.echo(f"{params}: OK — {len(p.datasets)} datasets, {len(p.models)} models, {len(p.variants)} variants, "
               f"zoos: {', '.join(f'{k} ({len(z.models)} models)' for k, z in p.zoos.items())}")


@app.command("check-data")
def check_data(zoo: str = typer.Option("full", help="the zoo whose datasets must be present"),
               params: str = typer.Option("params.yaml")) -> None:
    """Check that the datasets a zoo needs are present under the data root (or downloadable)."""
    from zoo.data import DataNotFoundError, data_root, load_dataset

    p = _params(params)
    if zoo not in p.zoos:
        _fail(f"unknown zoo {zoo!r}; params.yaml declares {', '.join(p.zoos)}", 2)
    needed = sorted({p.models[m].dataset for m in p.zoos[zoo].models})
    for ds in needed:
        src = p.datasets[ds].source
        try:
            load_dataset(src, "test", p.data.root, p.data.download)
        except DataNotFoundError as err:
            _fail(f"dataset {ds!r} for zoo {zoo!r} is missing: {err}")
        typer.echo(f"{ds}: found ({src}) under {data_root(p.data.root)}")


def _dvc_repro(target: str) -> int:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # stages run `python` from this environment
    dvc = shutil.which("dvc", path=env["PATH"]) or "dvc"
    return subprocess.call([dvc, "repro", target], env=env)


@app.command()
def demo(params: str = typer.Option("params.yaml")) -> None:
    """Rebuild the embedded demo zoo (scikit-learn digits, offline): `dvc repro publish-demo`."""
    p = _params(params)
    t0 = time.time()
    code = _dvc_repro("publish-demo")
    if code:
        _fail(f"dvc repro publish-demo failed (exit {code})", code)
    typer.echo(f"demo zoo rebuilt in {time.time() - t0:.0f} s: {p.zoos['demo'].dir}/index.json; "
               f"browse runs with `mlflow ui --backend-store-uri {p.tracking.uri}`; `zoo best MODEL --at-T 32`")


@app.command()
def best(model: str = typer.Argument(..., help="a model name from params.yaml"),
         at_t: int = typer.Option(32, "--at-T", help="timesteps at which to compare variants"),
         params: str = typer.Option("params.yaml")) -> None:
    """Print the best conversion variant of MODEL at T from MLflow, with its normalization settings."""
    from zoo.tracking import ranked_variants, resolve_uri

    p = _params(params)
    uri = resolve_uri(p.tracking.uri)
    runs = ranked_variants(uri, p.tracking.experiment, model, at_t)
    key = f"accuracy_T{at_t}"
    if not runs:
        _fail(f"no evaluated variants of {model!r} at T={at_t} in {uri} (experiment {p.tracking.experiment!r}); "
              f"run the pipeline first (make demo) and check that T={at_t} is in evaluation.timesteps")
    top = runs[0]
    prm = top.data.params
    typer.echo(f"best variant of {model} at T={at_t}: {top.data.tags.get('zoo_variant')} "
               f"(accuracy {top.data.metrics[key]:.4f}, ANN {top.data.metrics.get('ann_accuracy', float('nan')):.4f}, "
               f"run {top.info.run_id})")
    settings = ["norm", "percentile", "channel_wise", "form", "reset", "v_init", "neuron", "encoder", "readout",
                "depth_compensation"]
    typer.echo("normalization settings: " + ", ".join(f"{k}={prm.get(k)}" for k in settings if k in prm))
    typer.echo(f"\n{'variant':<18} {'acc@T':>8} {'energy ratio':>13}")
    for r in runs:
        typer.echo(f"{r.data.tags.get('zoo_variant', '?'):<18} {r.data.metrics[key]:>8.4f} "
                   f"{r.data.metrics.get('energy_ratio_Tmax', float('nan')):>13.3f}")


@app.command("sync-readme")
def sync_readme_cmd(zoo: str = typer.Option("demo", help="the zoo whose table goes into README.md"),
                    params: str = typer.Option("params.yaml"), readme: Path = typer.Option(Path("README.md"))) -> None:
    """Rewrite README.md's zoo table from the published index, and its seed-papers table from every published
    index (never typed by hand)."""
    import json

    from zoo.cards import render_paper_table, sync_block, sync_readme

    p = _params(params)
    zdir = Path(p.zoos[zoo].dir)
    index = json.loads((zdir / "index.json").read_text())
    changed = sync_readme(readme, index, f"{zoo}-zoo-table", link_dir=str(zdir))
    published = {z.dir: json.loads((Path(z.dir) / "index.json").read_text()) for z in p.zoos.values()
                 if (Path(z.dir) / "index.json").is_file()}
    changed = sync_block(readme, "seed-papers", render_paper_table(published)) or changed
    typer.echo(f"{readme}: {'updated' if changed else 'already up to date'} from {zdir / 'index.json'} "
               f"(seed papers: {len(published)} published indexes)")
