"""The `zoo` command line. One Typer app; each area registers its commands in its own module."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="zoo",
    help="snn-zoo: convert trained ANNs into spiking networks, rebuild and browse the spiking model zoo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def fail(msg: object, code: int = 1) -> None:
    """Print ``error: msg`` to stderr and exit with ``code`` (2: bad input, 1: the work failed)."""
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


@app.callback()
def _setup() -> None:
    from zoo.utils import setup_logging

    setup_logging(timestamps=False)


# Command modules register themselves on `app` when imported.
from zoo.cli import core_cmds as _core_cmds  # noqa: E402,F401
from zoo.cli import hub_cmds as _hub_cmds  # noqa: E402,F401
from zoo.cli import pipeline_cmds as _pipeline_cmds  # noqa: E402,F401

__all__ = ["app", "fail"]
