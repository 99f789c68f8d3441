"""CLI commands (core_cmds)."""
from zoo.cli import app  # noqa: F401
