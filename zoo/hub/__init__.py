"""The published zoo: the index, the remote, a verified download cache and :func:`load`.

The zoo is described by one JSON index (``models/zoo/index.json`` in the repository, written by the
pipeline's publish stage through :func:`write_index` from the entries of its packaged models), whose typed
schema is :mod:`zoo.hub.schema` (:class:`ZooIndex`, :class:`IndexEntry`, :class:`Variant`). Every published
(model, variant) is ONE ``.safetensors`` file listed in the index with its size, sha256 and path relative to
the index, ``<model>/<variant>.safetensors`` (each model's folder also holds its card); the files lie in the
same layout next to the index on the remote. A variant without a file was measured but not published (the
zoo's ``default_only`` models keep only their default variant's checkpoint); its record says how to ``rebuild``
it.

The package: :mod:`~zoo.hub.errors`, :mod:`~zoo.hub.schema` (the index format and its validation),
:mod:`~zoo.hub.locations` (where the zoos, the remote and the cache are), :mod:`~zoo.hub.index` (reading,
joining and writing indexes), :mod:`~zoo.hub.catalog` (looking models and variants up),
:mod:`~zoo.hub.transports` (http(s), file and dvc remotes) and :mod:`~zoo.hub.cache` (:func:`pull` and
:func:`load`). Re-measuring the published claims (:func:`remeasure`, :func:`test_data`) is :mod:`zoo.claims`'s,
re-exported here.

Where things come from (environment variables first):

``ZOO_INDEX``
    The index: a path or an ``http(s)://`` / ``file://`` URL of the JSON file, or a ``dvc://`` remote (its
    ``index.json`` is read). Default: the checkout's ``models/zoo/index.json`` (found relative to the
    package) together with the other published zoos beside it, ``models/zoo-<name>/index.json`` (the
    pipeline's ``zoos.large`` is ``models/zoo-large``): one index whose entries from those zoos carry their
    directory as ``"remote"``; else, in an installed package (no checkout), the same indexes shipped with it
    (``zoo/_published/<zoo dir>/index.json``, copied byte for byte from the checkout's ``models/`` when the
    wheel is built: ``setup.py``), joined the same way, their files at the :data:`DEFAULT_REMOTE`; else
    ``<remote>/index.json``.
``ZOO_REMOTE``
    The base URL the model files are downloaded from (``<remote>/<model>/<variant>.safetensors``), for every
    model. Default: the entry's or else the index's ``"remote"`` field if it has one, else the place the index
    was read from (``ZOO_INDEX=/srv/zoo-large/index.json`` fetches ``/srv/zoo-large/<model>/<variant>.safetensors``;
    an ``http(s)://`` index likewise; for the index shipped with an installed package, the default remote
    ``DEFAULT_REMOTE/<zoo dir>``, e.g. ``https://github.com/snn-zoo/snn-zoo/raw/main/models/zoo``), else the
    local checkout's ``models/zoo/`` directory as a ``file://`` URL (when that directory exists, i.e. when
    snn-zoo runs from a source checkout). Supported: ``http://``, ``https://``, ``file://``, plain paths
    and ``dvc://<repo-url-or-path>[?rev=<rev>&dir=<dir-in-repo>&remote=<dvc-remote>]`` (read through
    ``dvc.api``; ``dir`` defaults to ``models/zoo``, an empty repo means the current DVC repository).
``ZOO_CACHE_DIR``
    Where downloaded files are kept. Default: ``platformdirs.user_cache_dir("snn-zoo")``.
``ZOO_TIMEOUT``
    Seconds an http(s) remote may stay silent (connecting, or between two reads) before a download fails
    with :class:`RemoteError`. Default 60.

Safety: only ``.safetensors`` files (a plain name, or a plain folder name and a plain name: no absolute paths,
no ``..``) are ever accepted from an index, so nothing is ever unpickled or written outside the cache; every
download is streamed into a temporary file next to its destination and verified (size and sha256 against the
index) before an atomic rename, and a cached file is hashed again every time it is used, so a corrupted cache
entry is detected and downloaded again.
"""
from __future__ import annotations

import importlib

from zoo.hub.cache import cached_path, load, pull
from zoo.hub.catalog import ann_reference, best_result, info, list_models, published_variant, resolve_variant
from zoo.hub.errors import (ChecksumError, HubError, IndexFormatError, ModelNotFoundError, NotPublishedError,
                            RemoteError, UnsafeFileError, VariantNotFoundError)
from zoo.hub.index import read_index, write_index
from zoo.hub.locations import (DEFAULT_REMOTE, ENV_CACHE, ENV_INDEX, ENV_REMOTE, INDEX_NAME, PACKAGED_DIR,
                               cache_dir, checkout_zoo_dirs, packaged_zoo_dirs, remote_url, repo_index_path)
from zoo.hub.schema import (SCHEMA, IndexEntry, Variant, ZooIndex, check_file_name, validate_entry,
                            validate_index, validate_variant)
from zoo.hub.transports import CHUNK, ENV_TIMEOUT, MAX_INDEX_BYTES, TIMEOUT_S, USER_AGENT, timeout_s
from zoo.utils import atomic_path, sha256_file  # noqa: F401  (zoo.hub.sha256_file, as before the package)

__all__ = [
    "SCHEMA", "HubError", "ModelNotFoundError", "VariantNotFoundError", "NotPublishedError", "IndexFormatError",
    "UnsafeFileError",
    "RemoteError", "ChecksumError", "read_index", "write_index", "validate_index", "list_models", "info",
    "ann_reference", "best_result", "remote_url", "cache_dir", "cached_path", "pull", "load", "resolve_variant",
    "checkout_zoo_dirs", "packaged_zoo_dirs", "DEFAULT_REMOTE",
    "test_data", "NormalizedDataset", "binomial_tolerance", "remeasure",
    "ZooIndex", "IndexEntry", "Variant", "validate_entry", "validate_variant",
]

#: Re-exported from :mod:`zoo.claims` on first use: it imports this package's modules, and re-measuring is
#: evaluation's business, not the hub's.
_CLAIMS = ("test_data", "NormalizedDataset", "binomial_tolerance", "replay_tolerance", "remeasure")


def __getattr__(name: str):
    if name in _CLAIMS:
        return getattr(importlib.import_module("zoo.claims"), name)
    raise AttributeError(f"module 'zoo.hub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_CLAIMS))
