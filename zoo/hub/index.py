"""Reading the zoo index (from a path, a URL, the checkout's published zoos joined into one, or the indexes
shipped with an installed package) and writing it (:func:`write_index`, the publish stage's)."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

from zoo.hub.errors import IndexFormatError, RemoteError
from zoo.hub.locations import (DEFAULT_REMOTE, ENV_INDEX, INDEX_NAME, cache_dir, checkout_zoo_dirs,
                               packaged_zoo_dirs, remote_url, repo_index_path)
from zoo.hub.schema import validate_index
from zoo.hub.transports import fetch_bytes, join_url, local_path, scheme_of
from zoo.utils import atomic_path

__all__ = ["read_index", "write_index", "parse_index", "ReadIndex"]

log = logging.getLogger(__name__)


def parse_index(data: bytes | str, source: str) -> dict:
    """The index in ``data`` (JSON), validated; errors name ``source``."""
    try:
        index = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise IndexFormatError(f"{source}: not valid JSON ({err})") from err
    return validate_index(index, source)


class ReadIndex(dict):
    """An index as read by :func:`read_index`: a plain dict (equal to the JSON's) that also knows ``base``, the
    location it was read from, where its files lie when it names no ``"remote"`` (:func:`remote_url`)."""

    base: str | None = None


def _located(index: dict, base: str) -> dict:
    out = ReadIndex(index)
    out.base = base
    return out


def _join_zoos(dirs: list[Path], remote_of: Callable[[Path], str]) -> dict:
    """The zoos in ``dirs`` as one index: the first's, with the models of the others added, each with
    ``remote_of(its dir)`` (or its own or its index's remote) as ``"remote"``. A name published twice is an
    error."""
    index = parse_index(dirs[0].joinpath(INDEX_NAME).read_bytes(), str(dirs[0] / INDEX_NAME))
    index = dict(index, models=dict(index["models"]))
    origin = {name: dirs[0] for name in index["models"]}
    for d in dirs[1:]:
        other = parse_index(d.joinpath(INDEX_NAME).read_bytes(), str(d / INDEX_NAME))
        for name, entry in other["models"].items():
            if name in origin:
                raise IndexFormatError(f"model {name!r} is published twice, in {origin[name] / INDEX_NAME} and "
                                       f"{d / INDEX_NAME}: remove it from one zoo (params.yaml zoos.<zoo>.models) "
                                       "and republish")
            index["models"][name] = dict(entry, remote=entry.get("remote") or other.get("remote") or remote_of(d))
            origin[name] = d
    return index


def _read_checkout_index() -> dict:
    """The checkout's zoos as one index: ``models/zoo``'s, with the models of the other zoos added, each with
    its own directory (or its index's remote) as ``"remote"``. A name published by two zoos is an error."""
    return _join_zoos(checkout_zoo_dirs(), lambda d: d.as_uri())


def _read_packaged_index(dirs: list[Path]) -> dict:
    """The indexes shipped with the package, joined as :func:`_read_checkout_index` joins the checkout's, their
    files at :data:`DEFAULT_REMOTE` (``<DEFAULT_REMOTE>/<zoo dir>``): the first zoo's as the place the index
    was read from, the others' as each entry's ``"remote"``."""
    index = _join_zoos(dirs, lambda d: join_url(DEFAULT_REMOTE, d.name))
    return _located(index, join_url(DEFAULT_REMOTE, dirs[0].name))


def _read_from(src: str) -> dict:
    """The index at ``src``: a path, a ``file://`` or ``http(s)://`` URL of the JSON file, or a ``dvc://``
    remote (its ``index.json``); it knows where it was read from (:class:`ReadIndex`)."""
    if scheme_of(src) in ("", "file"):
        p = local_path(src)
        try:
            data = p.read_bytes()
        except OSError as err:
            raise RemoteError(str(p), f"cannot read the index ({err.strerror or err})") from err
        return _located(parse_index(data, str(p)), p.absolute().parent.as_uri())
    if scheme_of(src) == "dvc":  # a dvc:// index names the remote; the index is its index.json
        return _located(parse_index(fetch_bytes(src, INDEX_NAME), join_url(src, INDEX_NAME)), src)
    base, _, name = src.rstrip("/").rpartition("/")
    return _located(parse_index(fetch_bytes(base, name), src), base)


def _read_remote_index() -> dict:
    """``index.json`` of :func:`remote_url`, a copy kept in the cache and used when the remote is unreachable."""
    base = remote_url(None)
    cached = cache_dir() / INDEX_NAME
    try:
        data = fetch_bytes(base, INDEX_NAME)
    except RemoteError as err:
        if cached.is_file():
            log.warning("%s; using the cached index %s", err, cached)
            return parse_index(cached.read_bytes(), str(cached))
        raise
    index = parse_index(data, join_url(base, INDEX_NAME))
    try:
        with atomic_path(cached) as tmp:
            tmp.write_bytes(data)
    except OSError as err:  # the cache is an optimisation only
        log.warning("could not cache the index in %s: %s", cached, err)
    return index


def read_index(path: str | Path | None = None) -> dict:
    """Read and validate the zoo index.

    ``path`` (a path or URL), else ``$ZOO_INDEX``, else the checkout's ``models/zoo/index.json`` merged with
    its other published zoos (:func:`checkout_zoo_dirs`), else the same indexes shipped with an installed
    package (:func:`packaged_zoo_dirs`; their files at :data:`DEFAULT_REMOTE`), else
    ``index.json`` fetched from :func:`remote_url` (a copy is kept in the cache and used when offline).
    """
    src = str(path) if path is not None else os.environ.get(ENV_INDEX)
    if src:
        return _read_from(src)
    if repo_index_path().is_file():
        return _read_checkout_index()
    shipped = packaged_zoo_dirs()
    if shipped:
        return _read_packaged_index(shipped)
    return _read_remote_index()


def _finite(obj: Any) -> Any:
    """A copy of ``obj`` with non-finite floats replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_index(index: dict, path: str | Path) -> Path:
    """Validate ``index`` and write it to ``path`` atomically (temp file + ``os.replace``), keys sorted.

    Non-finite floats (NaN, inf: e.g. an energy ratio without ANN operations) are written as ``null``, since
    JSON has no such numbers. On any error (invalid structure, a value JSON cannot encode) the existing file
    is left untouched. What is written is ``index`` itself (the schema checks it, it does not rewrite it).
    """
    index = validate_index(_finite(index), "index")
    try:
        text = json.dumps(index, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise IndexFormatError(f"index: cannot be written as JSON ({err})") from err
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
    return path
