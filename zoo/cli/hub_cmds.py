"""CLI commands of the published zoo: ``zoo list``, ``zoo info NAME``, ``zoo pull NAME``, ``zoo evaluate NAME``.

The index comes from ``$ZOO_INDEX`` (default: the checkout's ``models/zoo/index.json`` and its other published
zoos, ``models/zoo-<name>/``; in an installed package without a checkout, the same indexes shipped with it, their
files at ``zoo.hub.DEFAULT_REMOTE``), the files from ``$ZOO_REMOTE`` (default: the index's ``"remote"``, else
next to it) and the cache is ``$ZOO_CACHE_DIR``: see :mod:`zoo.hub`. Errors print one line on stderr and exit
with code 1.
"""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from zoo.cli import app, fail


def _fail(err: Exception) -> None:
    fail(err, 1)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}%"


def _variant_count(row: dict) -> str:
    """``7``, or ``7 (1 published)`` when only some variants have a checkpoint to download."""
    n, published = len(row["variants"]), len(row.get("published_variants", row["variants"]))
    return str(n) if published == n else f"{n} ({published} published)"


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """List the models of the zoo: dataset, test images, ANN accuracy on them, best spiking variant, its accuracy."""
    from zoo import hub

    try:
        rows = hub.list_models()
    except hub.HubError as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"snn-zoo: {len(rows)} models", title_justify="left")
    width = max([len(r["name"]) for r in rows] + [5])
    table.add_column("Model", no_wrap=True, min_width=width, style="bold")
    table.add_column("Dataset")
    table.add_column("Test images", justify="right")
    table.add_column("ANN acc. (same images)", justify="right")
    table.add_column("Best variant")
    table.add_column("Best SNN acc. (T)", justify="right")
    table.add_column("Energy SNN/ANN", justify="right")
    table.add_column("Variants", justify="right", no_wrap=True)  # how many (published); `zoo info NAME` and --json name them
    for r in rows:
        best = f"{_pct(r['best_accuracy'])} (T={r['best_timesteps']})" if r["best_variant"] else "–"
        energy = "–" if r["energy_ratio"] is None else f"{r['energy_ratio']:.3g}"
        images = "–" if r["test_images"] is None else f"{r['test_images']:,}"
        table.add_row(r["name"], r["dataset"] or "–", images, _pct(r["ann_accuracy_same_images"]),
                      r["best_variant"] or "–", best,
                      energy, _variant_count(r))
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=max(120, width + 90))
    console.print(table)


@app.command("info")
def info_cmd(
    name: Annotated[str, typer.Argument(help="Model name, as shown by `zoo list`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the index entry as JSON.")] = False,
) -> None:
    """Show a model's card: architecture, accuracy at every T per variant, energy, checksums, provenance."""
    from zoo import hub
    from zoo.cards import card_markdown

    try:
        entry = hub.info(name)
    except hub.HubError as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(entry, indent=2, sort_keys=True))
        return
    text = card_markdown(entry)
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console()
    if console.is_terminal:
        console.print(Markdown(text))
    else:
        typer.echo(text, nl=False)


@app.command("pull")
def pull_cmd(
    name: Annotated[str, typer.Argument(help="Model name, as shown by `zoo list`.")],
    variant: Annotated[Optional[str], typer.Option("--variant", "-v", help="Variant (default: the model's "
                                                                           "default variant).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if a verified copy is "
                                                        "cached.")] = False,
) -> None:
    """Download (or find in the cache) and verify a model's file; prints its local path."""
    from zoo import hub

    try:
        path = hub.pull(name, variant, force=force)
    except (hub.HubError, OSError) as err:  # OSError: e.g. an unwritable cache directory
        _fail(err)
    typer.echo(str(path))


def _timesteps(text: Optional[str]) -> Optional[list[int]]:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give comma-separated integers, e.g. 32,64,128") from None


def _test_images(text: Optional[str]):
    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a number of images or 'all'") from None


@app.command("evaluate")
def evaluate_cmd(
    name: Annotated[str, typer.Argument(help="Model name, as shown by `zoo list`.")],
    variant: Annotated[Optional[str], typer.Option("--variant", "-v", help="Variant (default: the model's "
                                                                           "default variant).")] = None,
    test_images: Annotated[Optional[str], typer.Option(
        "--test-images", "-n", help="Images to simulate: a number (a fixed seeded subset) or 'all' (the whole "
                                    "test split, compared with the ANN on the whole split). Default: the "
                                    "images the index was measured on, so every claim is checked; a smaller "
                                    "number checks the claims on part of them.")] = None,
    timesteps: Annotated[Optional[str], typer.Option(
        "--timesteps", "-t", help="Comma-separated T values (default: the index's).")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Data root (default $ZOO_DATA_DIR).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per simulator batch.")] = 256,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's).")] = None,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: cpu, gpu, auto, ...")] = "cpu",
    devices: Annotated[int, typer.Option(min=1, help="Processes (GPUs) for Lightning DDP; results equal one "
                                                     "process's.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure a published model again on its real test data and compare with its index (and its ANN)."""
    from zoo import hub
    from zoo.data import DataNotFoundError

    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        r = hub.remeasure(name, variant, test_images=_test_images(test_images), timesteps=_timesteps(timesteps),
                          root=data_root, batch_size=batch_size, accelerator=accelerator, devices=devices,
                          progress=not as_json)
    except (hub.HubError, DataNotFoundError, OSError, ValueError) as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(r, indent=2, sort_keys=True))
        return
    what = f"{r['images']:,} of the {r['split_images']:,} test images" if r["images"] < r["split_images"] \
        else f"all {r['images']:,} test images"
    whose = ", those of the index" if r["same_images"] else (
        f", part of the index's {r['index_images']:,}" if r["subset_of_index"] else
        f" (the index was measured on {r['index_images']:,}: no claim to compare)")
    typer.echo(f"{r['model']} / {r['variant']}: {what}{whose}")
    typer.echo(f"ANN on the same images: {_pct(r['ann_accuracy'])}" if r["ann_accuracy"] is not None
               else "ANN on the same images: unknown (the index has it for its own images and the whole split)")
    typer.echo("     T  measured     index  tolerance  agrees  spikes/img  energy ratio")
    for row in r["rows"]:
        idx = "–" if row["index"] is None else _pct(row["index"])
        tol = "–" if row["tolerance"] is None else f"±{100 * row['tolerance']:.2f}"
        ok = "–" if row["agrees"] is None else ("yes" if row["agrees"] else "NO")
        typer.echo(f"{row['T']:6d}  {_pct(row['accuracy']):>8}  {idx:>8}  {tol:>9}  {ok:>6}  "
                   f"{row['spikes_per_image']:10.4g}  {row['energy_ratio']:12.4g}")
    if r["ann_accuracy"] is not None:
        typer.echo(f"within 1 pp of the ANN from T={r['within_1pp_from']}" if r["within_1pp_from"] else
                   "not within 1 pp of the ANN at any T evaluated")
    if any(row["agrees"] is False for row in r["rows"]):
        why = ("the replay tolerance (the index's own images, simulated as the index's figures were: only a few "
               "near-tied images may flip between CPUs)" if r["tolerance_kind"] == "replay" else
               "the binomial tolerance")
        typer.echo(f"error: measured accuracy differs from the index beyond {why}", err=True)
        raise typer.Exit(1)
