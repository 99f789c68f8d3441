"""The published zoo: the index, the remote, a verified download cache and :func:`load`.

The zoo is described by one JSON index (``models/zoo/index.json`` in the repository, written by the
pipeline's publish stage through :func:`write_index` from the entries of its packaged models). Every published
(model, variant) is ONE ``.safetensors`` file listed in the index with its size, sha256 and path relative to
the index, ``<model>/<variant>.safetensors`` (each model's folder also holds its card); the files lie in the
same layout next to the index on the remote. A variant without a file was measured but not published (the zoo's ``default_only`` models keep only
their default variant's checkpoint); its record says how to ``rebuild`` it.

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
no ``..``) are ever accepted from an index, so nothing is ever unpickled or written outside the cache; every download is streamed into a temporary file next to its destination and verified
(size and sha256 against the index) before an atomic rename, and a cached file is hashed again every time it
is used, so a corrupted cache entry is detected and downloaded again.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import http.client
import io
import json
import logging
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from zoo.utils import atomic_path, sha256_file

__all__ = [
    "SCHEMA", "HubError", "ModelNotFoundError", "VariantNotFoundError", "NotPublishedError", "IndexFormatError",
    "UnsafeFileError",
    "RemoteError", "ChecksumError", "read_index", "write_index", "validate_index", "list_models", "info",
    "ann_reference", "best_result", "remote_url", "cache_dir", "cached_path", "pull", "load", "resolve_variant",
    "checkout_zoo_dirs", "packaged_zoo_dirs", "DEFAULT_REMOTE",
    "test_data", "NormalizedDataset", "binomial_tolerance", "remeasure",
]

log = logging.getLogger(__name__)

SCHEMA = 1
INDEX_NAME = "index.json"
ENV_INDEX = "ZOO_INDEX"
ENV_REMOTE = "ZOO_REMOTE"
ENV_CACHE = "ZOO_CACHE_DIR"
ENV_TIMEOUT = "ZOO_TIMEOUT"
TIMEOUT_S = 60.0
CHUNK = 1 << 20
MAX_INDEX_BYTES = 64 << 20
USER_AGENT = "snn-zoo (+https://github.com/snn-zoo)"
#: Where an installed package (no checkout) downloads the files of its shipped index from: the repository's
#: ``models/`` folder on its Git host, each zoo in its own folder (``<DEFAULT_REMOTE>/zoo``,
#: ``<DEFAULT_REMOTE>/zoo-qcfs``, ...). ``ZOO_REMOTE`` overrides it (docs/using-the-zoo.md).
DEFAULT_REMOTE = "https://github.com/snn-zoo/snn-zoo/raw/main/models"
#: The folder of the package that holds the shipped indexes, ``<zoo dir>/index.json`` (written by setup.py).
PACKAGED_DIR = "_published"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_FILE_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._+-]*/)?[A-Za-z0-9][A-Za-z0-9._+-]*\.safetensors")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


# ----------------------------------------------------------------------------------------------- errors
class HubError(Exception):
    """Base class of the zoo hub's errors; ``str(err)`` is a complete one-line message."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ModelNotFoundError(HubError, KeyError):
    """No model of that name in the index (the message suggests close names)."""


class VariantNotFoundError(HubError, KeyError):
    """The model has no variant of that name (the message lists the ones it has)."""


class NotPublishedError(VariantNotFoundError):
    """The variant was measured (its figures are in the index) but its checkpoint is not published: zoos keep
    only the default variant of their largest models in git (``zoos.<zoo>.default_only``)."""


class IndexFormatError(HubError, ValueError):
    """The index is not valid; the message names the offending key, e.g. ``models['x'].variants['y'].sha256``."""


class UnsafeFileError(IndexFormatError):
    """The index names a file that is not a plain ``<name>.safetensors`` (never downloaded, never loaded)."""


class RemoteError(HubError, OSError):
    """The remote could not be reached or did not deliver the file (``.url`` and ``.reason``)."""

    def __init__(self, url: str, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"cannot fetch {url}: {reason}")
        self.url, self.reason = url, reason


class ChecksumError(HubError, ValueError):
    """A downloaded (or cached) file does not match the size/sha256 recorded in the index."""

    def __init__(self, file: str, expected: str, actual: str, expected_size: int | None = None,
                 actual_size: int | None = None, source: str | None = None) -> None:
        size = ""
        if expected_size is not None and actual_size is not None and expected_size != actual_size:
            size = f"; size {actual_size} bytes, expected {expected_size}"
        src = f" from {source}" if source else ""
        super().__init__(f"checksum mismatch for {file}{src}: expected sha256 {expected}, got sha256 {actual}"
                         f"{size}; the file was not cached")
        self.file, self.expected, self.actual = file, expected, actual
        self.expected_size, self.actual_size = expected_size, actual_size


# ------------------------------------------------------------------------------------------ validation
def _fail(where: str, msg: str) -> None:
    raise IndexFormatError(f"{where}: {msg}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_type(obj: dict, key: str, where: str, kinds: tuple, *, required: bool = False,
                nullable: bool = True) -> None:
    if key not in obj:
        if required:
            _fail(f"{where}.{key}", "missing")
        return
    v = obj[key]
    if v is None and nullable and not required:
        return
    if kinds == ("number",):
        if not _is_number(v):
            _fail(f"{where}.{key}", f"expected a finite number, got {v!r}")
    elif isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        _fail(f"{where}.{key}", f"expected {names}, got {type(v).__name__} {v!r}")


def check_file_name(file: Any, where: str = "file") -> str:
    """Return ``file`` if it is ``<name>.safetensors`` or ``<folder>/<name>.safetensors`` with plain names, else
    raise :class:`UnsafeFileError`."""
    if not isinstance(file, str) or not _FILE_RE.fullmatch(file):
        raise UnsafeFileError(f"{where}: {file!r} is refused: the zoo only accepts '<name>.safetensors' or "
                              "'<model>/<name>.safetensors' with plain names (no other formats are ever downloaded "
                              "or unpickled; no absolute paths, '..' or deeper folders)")
    return file


def _validate_variant(var: Any, where: str) -> None:
    if not isinstance(var, dict):
        _fail(where, f"expected an object, got {type(var).__name__}")
    if "file" in var or any(k in var for k in ("size", "sha256")):  # a published checkpoint
        check_file_name(var.get("file"), f"{where}.file")
        _check_type(var, "size", where, (int,), required=True)
        if var["size"] < 0:
            _fail(f"{where}.size", f"negative size {var['size']}")
        sha = var.get("sha256")
        if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
            _fail(f"{where}.sha256", f"expected 64 lowercase hex characters, got {sha!r}")
    _check_type(var, "rebuild", where, (str,))
    acc = var.get("accuracy")
    if not isinstance(acc, dict):
        _fail(f"{where}.accuracy", f"expected an object {{T: accuracy}}, got {acc!r}")
    for t, a in acc.items():
        if not (isinstance(t, str) and t.isdigit() and int(t) > 0):
            _fail(f"{where}.accuracy[{t!r}]", "keys must be positive timestep counts written as strings")
        if a is not None and not _is_number(a):
            _fail(f"{where}.accuracy[{t!r}]", f"expected a number, got {a!r}")
    for key in ("energy_ratio", "spikes_per_image", "synops_per_image"):
        _check_type(var, key, where, ("number",))
    _check_type(var, "test_images", where, (int,))
    _check_type(var, "recipe", where, (dict,))
    _check_type(var, "draws", where, (str,))


def _validate_entry(name: Any, entry: Any, where: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        _fail(where, f"invalid model name {name!r} (letters, digits, '.', '_', '+', '-')")
    if not isinstance(entry, dict):
        _fail(where, f"expected an object, got {type(entry).__name__}")
    if entry.get("name") != name:
        _fail(f"{where}.name", f"must equal its key {name!r}, got {entry.get('name')!r}")
    _check_type(entry, "arch", where, (str,), required=True)
    _check_type(entry, "dataset", where, (str,), required=True)
    for key in ("family", "description", "notes", "git_commit", "remote"):
        _check_type(entry, key, where, (str,))
    for key in ("arch_kwargs", "params"):
        _check_type(entry, key, where, (dict,))
    _check_type(entry, "ann_accuracy", where, ("number",))
    _check_type(entry, "input", where, (dict,))
    shape = entry.get("input_shape")
    if shape is not None and not (isinstance(shape, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool)
                                                                   and s > 0 for s in shape)):
        _fail(f"{where}.input_shape", f"expected a list of positive ints, got {shape!r}")
    variants = entry.get("variants")
    if not isinstance(variants, dict) or not variants:
        _fail(f"{where}.variants", f"expected a non-empty object, got {variants!r}")
    for vname, var in variants.items():
        vwhere = f"{where}.variants[{vname!r}]"
        if not isinstance(vname, str) or not _NAME_RE.fullmatch(vname):
            _fail(vwhere, "invalid variant name")
        _validate_variant(var, vwhere)
    default = entry.get("default_variant")
    if default not in variants:
        _fail(f"{where}.default_variant", f"{default!r} is not one of its variants {sorted(variants)}")
    if "file" not in variants[default]:
        _fail(f"{where}.variants[{default!r}].file", "the default variant must have a published checkpoint")


def validate_index(index: Any, source: str = "index") -> dict:
    """Check the structure of ``index`` (see the module docstring) and return it unchanged.

    Raises :class:`IndexFormatError` (or :class:`UnsafeFileError`) naming the offending key.
    """
    if not isinstance(index, dict):
        _fail(source, f"expected a JSON object, got {type(index).__name__}")
    if index.get("schema") != SCHEMA:
        _fail(f"{source}.schema", f"expected {SCHEMA}, got {index.get('schema')!r}")
    _check_type(index, "generated", source, (str,))
    _check_type(index, "remote", source, (str,))
    models = index.get("models")
    if not isinstance(models, dict):
        _fail(f"{source}.models", f"expected an object {{name: entry}}, got {models!r}")
    for name, entry in models.items():
        _validate_entry(name, entry, f"{source}.models[{name!r}]")
    return index


# ------------------------------------------------------------------------------------------------ index
def _repo_zoo_dir() -> Path:
    """``models/zoo`` of the source checkout this package was imported from (may not exist)."""
    import zoo

    return Path(zoo.__file__).resolve().parents[1] / "models" / "zoo"


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


def _packaged_zoo_dir() -> Path:
    """``zoo/_published/zoo`` of the installed package (written by setup.py; absent in a checkout)."""
    return Path(__file__).resolve().parent / PACKAGED_DIR / "zoo"


def _read_checkout_index() -> dict:
    """The checkout's zoos as one index: ``models/zoo``'s, with the models of the other zoos added, each with
    its own directory (or its index's remote) as ``"remote"``. A name published by two zoos is an error."""
    return _join_zoos(checkout_zoo_dirs(), lambda d: d.as_uri())


def _read_packaged_index(dirs: list[Path]) -> dict:
    """The indexes shipped with the package, joined as :func:`_read_checkout_index` joins the checkout's, their
    files at :data:`DEFAULT_REMOTE` (``<DEFAULT_REMOTE>/<zoo dir>``): the first zoo's as the place the index
    was read from, the others' as each entry's ``"remote"``."""
    return _located(_join_zoos(dirs, lambda d: _join(DEFAULT_REMOTE, d.name)), _join(DEFAULT_REMOTE, dirs[0].name))


def _join_zoos(dirs: list[Path], remote_of) -> dict:
    """The zoos in ``dirs`` as one index: the first's, with the models of the others added, each with
    ``remote_of(its dir)`` (or its own or its index's remote) as ``"remote"``. A name published twice is an
    error."""
    index = _parse_index(dirs[0].joinpath(INDEX_NAME).read_bytes(), str(dirs[0] / INDEX_NAME))
    index = dict(index, models=dict(index["models"]))
    origin = {name: dirs[0] for name in index["models"]}
    for d in dirs[1:]:
        other = _parse_index(d.joinpath(INDEX_NAME).read_bytes(), str(d / INDEX_NAME))
        for name, entry in other["models"].items():
            if name in origin:
                raise IndexFormatError(f"model {name!r} is published twice, in {origin[name] / INDEX_NAME} and "
                                       f"{d / INDEX_NAME}: remove it from one zoo (params.yaml zoos.<zoo>.models) "
                                       "and republish")
            index["models"][name] = dict(entry, remote=entry.get("remote") or other.get("remote") or remote_of(d))
            origin[name] = d
    return index


def cache_dir() -> Path:
    """``$ZOO_CACHE_DIR``, else ``platformdirs.user_cache_dir("snn-zoo")`` (not created here)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("snn-zoo"))


def timeout_s(timeout: float | None = None) -> float:
    """``timeout`` if given, else ``$ZOO_TIMEOUT``, else :data:`TIMEOUT_S` (seconds, > 0)."""
    where = "timeout"
    if timeout is None:
        env = os.environ.get(ENV_TIMEOUT)
        if not env:
            return TIMEOUT_S
        where, timeout = f"{ENV_TIMEOUT}={env!r}", env
    try:
        value = float(timeout)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{where}: give a number of seconds > 0, e.g. {ENV_TIMEOUT}=120")
    return value


def _scheme(url: str) -> str:
    s = urllib.parse.urlsplit(url).scheme.lower()
    return "" if len(s) <= 1 else s  # "" for plain paths, including Windows drive letters


def _parse_index(data: bytes | str, source: str) -> dict:
    try:
        index = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise IndexFormatError(f"{source}: not valid JSON ({err})") from err
    return validate_index(index, source)


class _ReadIndex(dict):
    """An index as read by :func:`read_index`: a plain dict (equal to the JSON's) that also knows ``base``, the
    location it was read from, where its files lie when it names no ``"remote"`` (:func:`remote_url`)."""

    base: str | None = None


def _located(index: dict, base: str) -> dict:
    out = _ReadIndex(index)
    out.base = base
    return out


def read_index(path: str | Path | None = None) -> dict:
    """Read and validate the zoo index.

    ``path`` (a path or URL), else ``$ZOO_INDEX``, else the checkout's ``models/zoo/index.json`` merged with
    its other published zoos (:func:`checkout_zoo_dirs`), else the same indexes shipped with an installed
    package (:func:`packaged_zoo_dirs`; their files at :data:`DEFAULT_REMOTE`), else
    ``index.json`` fetched from :func:`remote_url` (a copy is kept in the cache and used when offline).
    """
    src = str(path) if path is not None else os.environ.get(ENV_INDEX)
    if src:
        if _scheme(src) in ("", "file"):
            p = _local_path(src)
            try:
                data = p.read_bytes()
            except OSError as err:
                raise RemoteError(str(p), f"cannot read the index ({err.strerror or err})") from err
            return _located(_parse_index(data, str(p)), p.absolute().parent.as_uri())
        if _scheme(src) == "dvc":  # a dvc:// index names the remote; the index is its index.json
            return _located(_parse_index(_fetch_bytes(src, INDEX_NAME), _join(src, INDEX_NAME)), src)
        base, _, name = src.rstrip("/").rpartition("/")
        return _located(_parse_index(_fetch_bytes(base, name), src), base)
    if repo_index_path().is_file():
        return _read_checkout_index()
    shipped = packaged_zoo_dirs()
    if shipped:
        return _read_packaged_index(shipped)
    base = remote_url(None)
    cached = cache_dir() / INDEX_NAME
    try:
        data = _fetch_bytes(base, INDEX_NAME)
    except RemoteError as err:
        if cached.is_file():
            log.warning("%s; using the cached index %s", err, cached)
            return _parse_index(cached.read_bytes(), str(cached))
        raise
    index = _parse_index(data, _join(base, INDEX_NAME))
    try:
        with atomic_path(cached) as tmp:
            tmp.write_bytes(data)
    except OSError as err:  # the cache is an optimisation only
        log.warning("could not cache the index in %s: %s", cached, err)
    return index


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
    is left untouched.
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


def _index(index: dict | None) -> dict:
    return read_index() if index is None else index


def _entry(index: dict, name: str) -> dict:
    models = index.get("models", {})
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        raise ModelNotFoundError(f"no model {name!r} in the zoo{hint} (`zoo list` shows all {len(models)} "
                                 "models)")
    return models[name]


def published_variant(entry: dict, variant: str | None = None) -> tuple[str, dict]:
    """:func:`resolve_variant` for a variant whose checkpoint can be pulled; :class:`NotPublishedError` for one
    that was only measured."""
    vname, var = resolve_variant(entry, variant)
    if "file" not in var:
        published = sorted(v for v, r in entry.get("variants", {}).items() if "file" in r)
        how = f"`{var['rebuild']}`" if var.get("rebuild") else "the pipeline's convert stage"
        raise NotPublishedError(
            f"model {entry.get('name')!r}: variant {vname!r} was measured (`zoo info` shows its figures) but its "
            f"checkpoint is not published, to keep the zoo small. Load a published variant "
            f"({', '.join(repr(v) for v in published)}; the default is {entry.get('default_variant')!r}), or build "
            f"it from a checkout with {how}")
    return vname, var


def resolve_variant(entry: dict, variant: str | None = None) -> tuple[str, dict]:
    """``(variant name, variant record)``; ``None`` means the entry's ``default_variant``."""
    variants = entry.get("variants", {})
    vname = variant if variant is not None else entry.get("default_variant") or next(iter(variants), None)
    if vname not in variants:
        close = difflib.get_close_matches(str(vname), list(variants), n=3, cutoff=0.5)
        hint = f" did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise VariantNotFoundError(f"model {entry.get('name')!r} has no variant {vname!r};{hint} it has: "
                                   f"{', '.join(sorted(variants)) or 'none'}")
    return vname, variants[vname]


def best_result(entry: dict) -> tuple[str, int, float] | None:
    """``(variant, T, accuracy)`` of the most accurate SNN result of ``entry`` (smallest T on ties)."""
    best = None
    for vname, var in sorted(entry.get("variants", {}).items()):
        for t, acc in (var.get("accuracy") or {}).items():
            if acc is None:
                continue
            key = (acc, -int(t))
            if best is None or key > best[0]:
                best = (key, (vname, int(t), float(acc)))
    return None if best is None else best[1]


def ann_reference(entry: dict) -> float | None:
    """The ANN's accuracy on the test images the SNN was evaluated on (else on the whole test split)."""
    return (entry.get("evaluation") or {}).get("ann_accuracy", entry.get("ann_accuracy"))


def list_models(index: dict | None = None) -> list[dict]:
    """One summary row per model, sorted by name: name, family, arch, dataset, ann_accuracy (whole test
    split), test_images (how many test images the SNNs were evaluated on; None: the whole split),
    ann_accuracy_same_images (the ANN on those images), default_variant, variants, published_variants (those
    with a checkpoint to download), best_variant, best_accuracy,
    best_timesteps, energy_ratio (of the best variant), size (bytes of the default variant's file),
    description."""
    index = _index(index)
    rows = []
    for name, e in sorted(index["models"].items()):
        best = best_result(e)
        bvar = e["variants"][best[0]] if best else {}
        rows.append({
            "name": name, "family": e.get("family"), "arch": e.get("arch"), "dataset": e.get("dataset"),
            "ann_accuracy": e.get("ann_accuracy"), "test_images": (e.get("evaluation") or {}).get("test_images"),
            "ann_accuracy_same_images": ann_reference(e), "default_variant": e.get("default_variant"),
            "variants": sorted(e["variants"]),
            "published_variants": sorted(v for v, r in e["variants"].items() if "file" in r),
            "best_variant": best[0] if best else None,
            "best_accuracy": best[2] if best else None, "best_timesteps": best[1] if best else None,
            "energy_ratio": bvar.get("energy_ratio"),
            "size": e["variants"].get(e.get("default_variant"), {}).get("size"),
            "description": e.get("description", ""),
        })
    return rows


def info(name: str, index: dict | None = None) -> dict:
    """The index entry of model ``name`` (a copy). Unknown names raise :class:`ModelNotFoundError`."""
    return copy.deepcopy(_entry(_index(index), name))


def test_data(name: str, root: str | Path | None = None, download: bool = False, index: dict | None = None):
    """The test split of model ``name``'s dataset, normalized as the model was trained: ready for
    :func:`zoo.simulate`. Read with :func:`zoo.data.load_dataset` (``root``: the data root, default
    ``$ZOO_DATA_DIR`` else ``./data/raw``; ``download``: fetch MNIST / CIFAR-10 when online); the scale, mean
    and std come from the index entry's ``input`` record."""
    entry = _entry(_index(index), name)
    spec = entry.get("input") or {}
    if not all(k in spec for k in ("source", "mean", "std")):
        raise IndexFormatError(f"model {name!r}: its index entry has no input normalization ('input': source, "
                               "mean, std); republish it with a current snn-zoo (`dvc repro package-<zoo>@<model>`)")
    from zoo.data import load_dataset

    return NormalizedDataset(load_dataset(spec["source"], "test", root, download), spec["mean"], spec["std"],
                             float(spec.get("scale", 1.0)))


def binomial_tolerance(p: float, n: int, sigmas: float = 3.0) -> float:
    """How far an accuracy measured again on ``n`` images may lie from a claimed ``p``: ``sigmas`` binomial
    standard errors (from a variance of at least 1e-4, so a claim of 100 % keeps a margin) plus one image.
    Used by ``zoo evaluate`` and the CI re-check of the published claims."""
    return sigmas * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1 / n


def replay_tolerance(n: int) -> float:
    """How far a deterministic SNN (analog input) re-simulated on exactly the ``n`` images of its claim may
    lie from it: 3 images or 1 %, whichever is more. Only the platform's floating-point kernels differ, which
    can flip an image whose top two classes nearly tie (replaying the published default variants on
    another CPU left 0 or 1 image off, of 300 or 360)."""
    return max(3, math.ceil(0.01 * n)) / n


def remeasure(name: str, variant: str | None = None, *, test_images: int | str | None = None,
              timesteps: list[int] | None = None, root: str | Path | None = None, batch_size: int = 256,
              chunk: int | None = None, accelerator: str = "cpu", devices: int = 1,
              progress: bool = True) -> dict[str, Any]:
    """Load a published model (:func:`load`), simulate it on its real test split and compare with its index.

    ``accelerator``/``devices``: other than ``"cpu"``/1, the simulation runs under Lightning
    (:func:`zoo.evaluation.evaluate_snn`, DDP over ``devices`` processes), with the same result.

    ``test_images``: None, the images the index was measured on (the pipeline's fixed seeded subset, or the
    whole split), so every claim is checked; ``"all"``, the whole test split, compared with the ANN's accuracy
    on the whole split; an int, a fixed seeded subset of that size (:func:`zoo.evaluation.eval_subset`). Seeded
    subsets are nested (the first n images of one seeded permutation), so up to the index's number of images
    a subset is part of the index's images and its claims are compared within the binomial tolerance of the
    smaller number: a quick check of a model measured on the whole split. On exactly the index's images an
    SNN is deterministic where it draws no random numbers (analog input, no spiking softmax) or draws them as
    the index's figures were drawn (the variant's ``draws`` is :data:`zoo.spiking.layer.DRAWS`: counter-based,
    a function of the seed and the image), so its claims must be replayed within :func:`replay_tolerance` (a
    few images); other stochastic figures are a random sample, compared within the binomial tolerance.
    ``timesteps``: default the index's. Returns ``model``, ``variant``, ``images``, ``split_images``,
    ``index_images`` (the number the index was measured on), ``same_images`` (exactly the index's images),
    ``subset_of_index`` (the index's images or some of them: its claims are compared), ``ann_accuracy`` and
    ``ann_images`` (the ANN on the same images, when the index knows it), ``within_1pp_from`` (the first T
    within 1 pp of it) and ``rows``, one per T: ``T``, ``accuracy``, ``index`` (the claim, when compared, else
    None), ``tolerance`` (see ``tolerance_kind``: ``"replay"`` or ``"binomial"``, at ``images``), ``agrees``,
    ``spikes_per_image``, ``synops_per_image``, ``energy_ratio``."""
    from zoo.evaluation import eval_subset
    from zoo.simulation import simulate

    index = read_index()
    entry = _entry(index, name)
    vname, var = published_variant(entry, variant)
    claimed = {int(t): a for t, a in (var.get("accuracy") or {}).items() if a is not None}
    ts = sorted({int(t) for t in (timesteps or claimed)})
    if not ts or ts[0] < 1:
        raise ValueError(f"timesteps must be positive integers, got {timesteps!r}")
    test = test_data(name, root, index=index)
    split = len(test)
    evaluated = (entry.get("evaluation") or {}).get("test_images") or split
    if test_images is None:
        n = min(evaluated, split)
    elif test_images == "all":
        n = split
    else:
        n = int(test_images)
        if not 0 < n:
            raise ValueError(f"test_images must be a positive number of images or 'all', got {test_images!r}")
        n = min(n, split)
    indexed = min(evaluated, split)
    same, nested = n == indexed, n <= indexed
    if same:
        ann, ann_images = ann_reference(entry), n
    elif n == split:
        ann, ann_images = entry.get("ann_accuracy"), split
    else:
        ann, ann_images = None, None
    snn = load(name, vname, index=index)
    # the same images replay deterministically: an SNN without random draws, or one whose figures were drawn as
    # this code draws them (an index without "draws" predates the counter-based draws: a sample, binomial)
    replay = same and (snn.draws is None or var.get("draws") == snn.draws)
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    if accelerator == "cpu" and devices == 1:
        result = simulate(snn, eval_subset(test, n), ts, batch_size=batch_size, chunk=chunk, progress=progress)
    else:
        from zoo.evaluation import evaluate_snn

        result = evaluate_snn(snn, eval_subset(test, n), ts, batch_size=batch_size, chunk=chunk,
                              accelerator=accelerator, devices=devices, progress=progress)
    rows = []
    for t in ts:
        acc, claim = float(result.accuracy[t]), claimed.get(t) if nested else None
        tol = None if claim is None else replay_tolerance(n) if replay else binomial_tolerance(claim, n)
        rows.append({"T": t, "accuracy": acc, "index": claim, "tolerance": tol,
                     "agrees": None if claim is None else abs(acc - claim) <= tol,
                     "spikes_per_image": float(result.spikes_per_image[t]),
                     "synops_per_image": float(result.synops_per_image[t]),
                     "energy_ratio": float(result.energy_ratio[t])})
    within = next((r["T"] for r in rows if ann is not None and r["accuracy"] >= ann - 0.01 - 1e-9), None)
    return {"model": name, "variant": vname, "images": n, "split_images": split, "index_images": indexed,
            "same_images": same, "subset_of_index": nested, "tolerance_kind": "replay" if replay else "binomial",
            "ann_accuracy": ann, "ann_images": ann_images,
            "within_1pp_from": within, "rows": rows}


def NormalizedDataset(base, mean: list[float], std: list[float], scale: float = 1.0):
    """:class:`zoo.data.NormalizedDataset` (torch is imported on first use, not with :mod:`zoo.hub`)."""
    from zoo.data import NormalizedDataset as _Normalized

    return _Normalized(base, mean, std, scale)


# ----------------------------------------------------------------------------------------------- remote
def remote_url(index: dict | None = None, entry: dict | None = None) -> str:
    """The base URL the files of ``entry`` (a model of ``index``) are fetched from.

    ``$ZOO_REMOTE``, else ``entry["remote"]``, else ``index["remote"]``, else the location ``index`` was read
    from (by :func:`read_index` from a path or URL: the files lie next to their index; the index shipped with
    an installed package: ``<DEFAULT_REMOTE>/<zoo dir>``), else the default: the
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


def _local_path(url: str) -> Path:
    if _scheme(url) == "file":
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise RemoteError(url, f"file:// URLs must be local (host {parts.netloc!r})")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url).expanduser()


def _join(base: str, name: str) -> str:
    scheme = _scheme(base)
    if scheme == "":
        return str(_local_path(base) / name)
    if scheme == "dvc":
        repo, _, query = base[len("dvc://"):].partition("?")
        return f"dvc://{repo.rstrip('/')}/{name}" + (f"?{query}" if query else "")
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def _copy(src: BinaryIO, dst: BinaryIO, url: str, *, total: int | None, limit: int | None,
          desc: str, progress: bool | None) -> tuple[int, str]:
    """Stream ``src`` into ``dst``; returns (bytes, sha256). Stops once more than ``limit`` bytes arrived."""
    from tqdm import tqdm

    h = hashlib.sha256()
    n = 0
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False,
              disable=None if progress is None else not progress) as bar:
        while True:
            try:
                block = src.read(CHUNK)
            except TimeoutError as err:
                raise RemoteError(url, f"transfer stalled after {n} bytes: nothing arrived within the timeout "
                                       f"(ZOO_TIMEOUT)") from err
            except (OSError, http.client.HTTPException) as err:
                raise RemoteError(url, f"transfer failed after {n} bytes ({type(err).__name__}: {err})") from err
            if not block:
                break
            n += len(block)
            h.update(block)
            dst.write(block)
            bar.update(len(block))
            if limit is not None and n > limit:  # more than the index promises: stop, the caller reports it
                return n, h.hexdigest()
    if total is not None and n < total:
        raise RemoteError(url, f"transfer truncated: received {n} of {total} bytes")
    return n, h.hexdigest()


def _stream(base: str, name: str, dst: BinaryIO, *, limit: int | None, progress: bool | None = False,
            timeout: float | None = None) -> tuple[int, str]:
    """Fetch ``<base>/<name>`` into ``dst``; returns (bytes, sha256). Failures raise :class:`RemoteError`."""
    url = _join(base, name)
    scheme = _scheme(base)
    if scheme in ("http", "https"):
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        timeout = timeout_s(timeout)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (scheme checked above)
        except urllib.error.HTTPError as err:
            raise RemoteError(url, f"HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError) as err:  # TimeoutError: connected, but no headers in time
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):
                raise RemoteError(url, f"no answer within {timeout:g} s (ZOO_TIMEOUT)") from err
            raise RemoteError(url, str(getattr(reason, "strerror", None) or reason)) from err
        except (OSError, http.client.HTTPException) as err:
            raise RemoteError(url, f"{type(err).__name__}: {err}") from err
        with resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            return _copy(resp, dst, url, total=total, limit=limit, desc=name, progress=progress)
    if scheme in ("", "file"):
        p = _local_path(base) / name
        try:
            f = open(p, "rb")  # noqa: SIM115
        except OSError as err:
            raise RemoteError(str(p), err.strerror or str(err)) from err
        with f:
            return _copy(f, dst, str(p), total=os.fstat(f.fileno()).st_size, limit=limit, desc=name,
                         progress=progress)
    if scheme == "dvc":
        return _stream_dvc(base, name, dst, limit=limit, progress=progress)
    raise RemoteError(base, f"unsupported remote scheme {scheme!r}; use http(s)://, file://, a path or dvc://")


def _stream_dvc(base: str, name: str, dst: BinaryIO, *, limit: int | None, progress: bool | None) -> tuple[int, str]:
    """``dvc://<repo>[?rev=<rev>&dir=<dir>&remote=<remote>]``: read ``<dir>/<name>`` through ``dvc.api.open``."""
    url = _join(base, name)
    repo, _, query = base[len("dvc://"):].partition("?")
    q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    path = f"{q.get('dir', 'models/zoo').strip('/')}/{name}"
    kwargs = {"repo": repo or None, "rev": q.get("rev"), "remote": q.get("remote")}
    try:
        import dvc.api
    except ImportError as err:
        raise RemoteError(url, "dvc:// remotes need the 'dvc' package (pip install dvc)") from err
    try:
        with dvc.api.open(path, mode="rb", **kwargs) as f:
            return _copy(f, dst, url, total=None, limit=limit, desc=name, progress=progress)
    except HubError:
        raise
    except Exception as err:  # noqa: BLE001  (dvc raises many kinds: missing file, remote, git, auth)
        try:
            where = dvc.api.get_url(path, **kwargs)
        except Exception:  # noqa: BLE001
            where = None
        reason = f"{type(err).__name__}: {err}" + (f" (storage URL {where})" if where else "")
        raise RemoteError(url, reason) from err


def _fetch_bytes(base: str, name: str, limit: int = MAX_INDEX_BYTES) -> bytes:
    buf = io.BytesIO()
    n, _ = _stream(base, name, buf, limit=limit, progress=False)
    if n > limit:
        raise RemoteError(_join(base, name), f"larger than {limit} bytes")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- pull
def cached_path(name: str, variant: str | None = None, index: dict | None = None) -> Path:
    """Where the file of (``name``, ``variant``) is (or would be) cached; no download, no verification."""
    _, var = published_variant(_entry(_index(index), name), variant)
    return cache_dir() / check_file_name(var.get("file"), f"models[{name!r}].file")


def pull(name: str, variant: str | None = None, *, force: bool = False, index: dict | None = None,
         progress: bool | None = None, timeout: float | None = None) -> Path:
    """Return the verified local path of the file of (``name``, ``variant``), downloading it if needed.

    ``variant=None`` is the model's default variant. A cached file is used when its size and sha256 match the
    index (no network); a corrupted one is deleted and downloaded again. ``force=True`` always downloads (the
    cached file is replaced only once the new one is verified). Downloads stream into a temporary file in the
    cache directory with a progress bar (``progress=None``: only on a terminal) and are renamed into place only
    after their size and sha256 match, so the cache never holds an unverified file.

    Raises :class:`ModelNotFoundError`, :class:`VariantNotFoundError` (:class:`NotPublishedError` for a variant
    that was measured but not published), :class:`UnsafeFileError`,
    :class:`RemoteError` (unreachable remote, HTTP error, truncated transfer) or :class:`ChecksumError`.
    """
    index = _index(index)
    entry = _entry(index, name)
    vname, var = published_variant(entry, variant)
    where = f"models[{name!r}].variants[{vname!r}]"
    _validate_variant(var, where)  # also refuses anything but a plain .safetensors name
    file, size, sha = var["file"], var["size"], var["sha256"]
    dest = cache_dir() / file
    if dest.exists() and not force:
        actual_size = dest.stat().st_size
        actual = sha256_file(dest) if actual_size == size else None
        if actual == sha:
            log.debug("cache hit: %s", dest)
            return dest
        log.warning("cached %s is corrupted (sha256 %s, size %d; expected sha256 %s, size %d): downloading it "
                    "again", dest, actual or "not computed", actual_size, sha, size)
        dest.unlink(missing_ok=True)
    base = remote_url(index, entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            n, actual = _stream(base, file, out, limit=size, progress=progress, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        if n != size or actual != sha:
            raise ChecksumError(file, sha, actual + (" (of the first bytes only)" if n > size else ""),
                                size, n, source=_join(base, file))
        tmp.chmod(0o644)
    return dest


def _check_matches_entry(path: Path, entry: dict, name: str) -> None:
    """Refuse a checkpoint built for another architecture or input shape than its index entry states."""
    from zoo.serialization import CheckpointError, read_config

    cfg = read_config(path)
    for key in ("arch", "input_shape"):
        got, stated = cfg.get(key), entry.get(key)
        if got is None or stated is None:
            continue
        if (got if isinstance(got, str) else list(got)) != (stated if isinstance(stated, str) else list(stated)):
            raise CheckpointError(f"{path}: a checkpoint with {key} {cfg[key]!r}, but the index entry of {name!r} "
                                  f"states {entry[key]!r}: the index and the file were published from different "
                                  "builds; publish them together again (dvc repro publish) or ask the zoo's "
                                  "maintainer to")


def load(name: str, variant: str | None = None, *, index: dict | None = None, ann: bool = False):
    """Pull (download or take from the cache, verified) and load a published spiking model (``index``:
    one already read by :func:`read_index`, else it is read).

    Returns the ``nn.Module`` built by :func:`zoo.serialization.load_snn`, with ``.zoo_card`` (the index entry,
    see :func:`info`), ``.zoo_variant`` and ``.zoo_sha256`` attached. ``ann=True`` returns the trained ANN inside
    that checkpoint instead (:func:`zoo.conversion.ann.ann_from_snn`; the default variants are threshold-form
    IF networks that hold it), e.g. to fine-tune or to convert again with other settings.
    """
    index = _index(index)
    vname, var = published_variant(_entry(index, name), variant)
    path = pull(name, vname, index=index)
    from zoo.serialization import load_snn

    _check_matches_entry(path, _entry(index, name), name)
    model = load_snn(path)
    if ann:
        from zoo.conversion.ann import ann_from_snn

        model = ann_from_snn(model)
    try:
        model.zoo_card = info(name, index)
        model.zoo_variant = vname
        model.zoo_sha256 = var.get("sha256")
    except (AttributeError, TypeError):  # a module that refuses new attributes still loads
        pass
    return model
