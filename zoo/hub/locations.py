"""Where the zoo's things are: the published zoos of a source checkout or of an installed package, the remote
the files are downloaded from, and the download cache (the environment variables are described in
:mod:`zoo.hub`)."""
from __future__ import annotations

import os
from pathlib import Path

from zoo.hub.errors import RemoteError

__all__ = ["INDEX_NAME", "ENV_INDEX", "ENV_REMOTE", "ENV_CACHE", "DEFAULT_REMOTE", "PACKAGED_DIR",
           "repo_index_path", "checkout_zoo_dirs", "packaged_zoo_dirs", "cache_dir", "remote_url"]

INDEX_NAME = "index.json"
ENV_INDEX = "ZOO_INDEX"
ENV_REMOTE = "ZOO_REMOTE"
ENV_CACHE = "ZOO_CACHE_DIR"
#: Where an installed package (no checkout) downloads the files of its shipped index from: the repository's
#: ``models/`` folder on its Git host, each zoo in its own folder (``<DEFAULT_REMOTE>/zoo``,
#: ``<DEFAULT_REMOTE>/zoo-qcfs``, ...). ``ZOO_REMOTE`` overrides it (docs/using-the-zoo.md).
DEFAULT_REMOTE = "https://github.com/snn-zoo/snn-zoo/raw/main/models"
#: The folder of the package that holds the shipped indexes, ``<zoo dir>/index.json`` (written by setup.py).
PACKAGED_DIR = "_published"


def _repo_zoo_dir() -> Path:
    """``models/zoo`` of the source checkout this package was imported from (may not exist)."""
    import zoo

    return Path(zoo.__file__).resolve().parents[1] / "models" / "zoo"


def _packaged_zoo_dir() -> Path:
    """``zoo/_published/zoo`` of the installed package (written by setup.py; absent in a checkout)."""
    import zoo

    return Path(zoo.__file__).resolve().parent / PACKAGED_DIR / "zoo"


def repo_index_path() -> Path:
    return _repo_zoo_dir() / INDEX_NAME


def _zoo_dirs(d: Path) -> list[Path]:
    """``d`` first (when it has an index), then every ``<d>-<name>`` beside it that holds an ``index.json``,
    sorted by name."""
    extra = sorted(p for p in d.parent.glob(f"{d.name}-*") if (p / INDEX_NAME).is_file()) if d.parent.is_dir() else []
    return ([d] if (d / INDEX_NAME).is_file() else []) + extra


def checkout_zoo_dirs() -> list[Path]:
    """The published zoos of the source checkout: ``models/zoo`` first (when it has an index), then every
    ``models/zoo-<name>`` beside it that holds an ``index.json``, sorted by name."""
    return _zoo_dirs(_repo_zoo_dir())


def packaged_zoo_dirs() -> list[Path]:
    """The published zoos shipped with an installed package, in the order of :func:`checkout_zoo_dirs`:
    ``zoo/_published/zoo``, ``zoo/_published/zoo-<name>``, each with the ``index.json`` of the checkout's
    ``models/`` folder of that name (copied when the wheel was built). Empty in a checkout."""
    return _zoo_dirs(_packaged_zoo_dir())


def cache_dir() -> Path:
    """``$ZOO_CACHE_DIR``, else ``platformdirs.user_cache_dir("snn-zoo")`` (not created here)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("snn-zoo"))


def remote_url(index: dict | None = None, entry: dict | None = None) -> str:
    """The base URL the files of ``entry`` (a model of ``index``) are fetched from.

    ``$ZOO_REMOTE``, else ``entry["remote"]``, else ``index["remote"]``, else the location ``index`` was read
    from (by :func:`~zoo.hub.read_index` from a path or URL: the files lie next to their index; the index
    shipped with an installed package: ``<DEFAULT_REMOTE>/<zoo dir>``), else the default: the
    local checkout's ``models/zoo/`` directory as a ``file://`` URL (only when that directory exists, i.e.
    running from a source checkout).
    """
    env = os.environ.get(ENV_REMOTE)
    if env:
        return env
    if entry and entry.get("remote"):
        return str(entry["remote"])
    if index and index.get("remote"):
        return str(index["remote"])
    if getattr(index, "base", None):
        return str(index.base)
    d = _repo_zoo_dir()
    if d.is_dir():
        return d.as_uri()
    reason = (f"no remote configured and no {d} checkout directory: set {ENV_REMOTE} to an http(s)://, "
              "file:// or dvc:// URL or to a directory holding the zoo's index.json and files")
    raise RemoteError("", reason, reason)
