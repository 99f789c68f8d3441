"""Build hook (the metadata is in pyproject.toml): the wheel ships the published zoo indexes as package data.

``zoo/_published/<zoo dir>/index.json`` is ``models/<zoo dir>/index.json`` copied byte for byte when the wheel is
built, for ``models/zoo`` and every ``models/zoo-<name>`` that holds an index: the zoos a checkout joins into one
index (``zoo.hub.checkout_zoo_dirs``). No second copy is kept in git, so the shipped index cannot drift from the
published one; ``zoo.hub`` reads it when snn-zoo runs from an installed package, with the files at
``zoo.hub.DEFAULT_REMOTE`` (``ZOO_REMOTE`` overrides it). An editable install reads the checkout's ``models/``.
The sdist carries the indexes too (MANIFEST.in), so a wheel built from it ships them as well.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
PACKAGED_DIR = "_published"  # zoo.hub.PACKAGED_DIR


def published_indexes() -> list[Path]:
    """``models/zoo/index.json``, then ``models/zoo-<name>/index.json`` sorted by name (as checkout_zoo_dirs)."""
    main = ROOT / "models" / "zoo"
    extra = sorted(p for p in main.parent.glob("zoo-*") if (p / "index.json").is_file())
    dirs = ([main] if (main / "index.json").is_file() else []) + extra
    return [d / "index.json" for d in dirs]


class BuildPyWithIndex(build_py):
    """build_py, then the published indexes into ``<build_lib>/zoo/_published/`` (replacing what an earlier build
    left there)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's models/ directly
            return
        indexes = published_indexes()
        if not indexes or indexes[0].parent.name != "zoo":
            raise SetupError(f"{ROOT / 'models' / 'zoo' / 'index.json'} is missing: the wheel ships the published "
                             "zoo indexes; build it from a checkout or an sdist of snn-zoo")
        out = Path(self.build_lib) / "zoo" / PACKAGED_DIR
        shutil.rmtree(out, ignore_errors=True)
        for src in indexes:
            self.mkpath(str(out / src.parent.name))
            self.copy_file(str(src), str(out / src.parent.name / "index.json"), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        shipped = [str(Path(self.build_lib) / "zoo" / PACKAGED_DIR / p.parent.name / "index.json")
                   for p in published_indexes()] if not self.editable_mode else []
        return super().get_outputs(include_bytecode) + shipped


setup(cmdclass={"build_py": BuildPyWithIndex})
