"""CLI commands of the published zoo: ``zoo list``, ``zoo info NAME``, ``zoo pull NAME``.

The index comes from ``$ZOO_INDEX`` (default: the checkout's ``models/zoo/index.json`` and its other published
zoos, ``models/zoo-<name>/``), the files from
``$ZOO_REMOTE`` and the cache is ``$ZOO_CACHE_DIR``: see :mod:`zoo.hub`. Errors print one line on stderr and
exit with code 1.
"""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from zoo.cli import app


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


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
    """List the models of the zoo: dataset, test images used, ANN accuracy on those images, best spiking
    variant and its accuracy."""
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
