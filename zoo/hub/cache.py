"""The verified download cache: :func:`pull` a published checkpoint (size and sha256 checked against the index,
on every use) and :func:`load` it as a model."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from zoo.hub.catalog import get_entry, index_or_read, info, published_variant
from zoo.hub.errors import ChecksumError
from zoo.hub.locations import cache_dir, remote_url
from zoo.hub.schema import check_file_name, validate_variant
from zoo.hub.transports import join_url, stream
from zoo.utils import atomic_path, sha256_file

__all__ = ["cached_path", "pull", "load"]

log = logging.getLogger(__name__)


def cached_path(name: str, variant: str | None = None, index: dict | None = None) -> Path:
    """Where the file of (``name``, ``variant``) is (or would be) cached; no download, no verification."""
    _, var = published_variant(get_entry(index_or_read(index), name), variant)
    return cache_dir() / check_file_name(var.get("file"), f"models[{name!r}].file")


def _cache_hit(dest: Path, size: int, sha: str) -> bool:
    """Whether ``dest`` holds the file (size and sha256); a corrupted copy is deleted."""
    if not dest.exists():
        return False
    actual_size = dest.stat().st_size
    actual = sha256_file(dest) if actual_size == size else None
    if actual == sha:
        log.debug("cache hit: %s", dest)
        return True
    log.warning("cached %s is corrupted (sha256 %s, size %d; expected sha256 %s, size %d): downloading it "
                "again", dest, actual or "not computed", actual_size, sha, size)
    dest.unlink(missing_ok=True)
    return False


def _download(base: str, file: str, size: int, sha: str, dest: Path, *, progress: bool | None,
              timeout: float | None) -> None:
    """``<base>/<file>`` into ``dest``, renamed into place only once its size and sha256 match."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            n, actual = stream(base, file, out, limit=size, progress=progress, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        if n != size or actual != sha:
            raise ChecksumError(file, sha, actual + (" (of the first bytes only)" if n > size else ""),
                                size, n, source=join_url(base, file))
        tmp.chmod(0o644)


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
    index = index_or_read(index)
    entry = get_entry(index, name)
    vname, var = published_variant(entry, variant)
    validate_variant(var, f"models[{name!r}].variants[{vname!r}]")  # also refuses all but a plain .safetensors name
    file, size, sha = var["file"], var["size"], var["sha256"]
    dest = cache_dir() / file
    if not force and _cache_hit(dest, size, sha):
        return dest
    _download(remote_url(index, entry), file, size, sha, dest, progress=progress, timeout=timeout)
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
    one already read by :func:`~zoo.hub.read_index`, else it is read).

    Returns the ``nn.Module`` built by :func:`zoo.serialization.load_snn`, with ``.zoo_card`` (the index entry,
    see :func:`~zoo.hub.info`), ``.zoo_variant`` and ``.zoo_sha256`` attached. ``ann=True`` returns the trained
    ANN inside that checkpoint instead (:func:`zoo.conversion.ann.ann_from_snn`; the default variants are
    threshold-form IF networks that hold it), e.g. to fine-tune or to convert again with other settings.
    """
    index = index_or_read(index)
    vname, var = published_variant(get_entry(index, name), variant)
    path = pull(name, vname, index=index)
    from zoo.serialization import load_snn

    _check_matches_entry(path, get_entry(index, name), name)
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
