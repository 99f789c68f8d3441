"""CLI commands (pipeline_cmds)."""
from zoo.cli import app  # noqa: F401
