"""Reading a file from a remote: ``http(s)://`` URLs, ``file://`` URLs and plain paths, and ``dvc://`` remotes
(``dvc://<repo-url-or-path>[?rev=<rev>&dir=<dir-in-repo>&remote=<dvc-remote>]``, read through ``dvc.api``).

Every transport streams into a binary file and returns (bytes, sha256), stopping once more bytes arrived than
the caller's ``limit``; every failure is a :class:`~zoo.hub.errors.RemoteError`.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from zoo.hub.errors import HubError, RemoteError

__all__ = ["ENV_TIMEOUT", "TIMEOUT_S", "CHUNK", "MAX_INDEX_BYTES", "USER_AGENT", "timeout_s", "scheme_of",
           "local_path", "join_url", "stream", "fetch_bytes"]

ENV_TIMEOUT = "ZOO_TIMEOUT"
TIMEOUT_S = 60.0
CHUNK = 1 << 20
MAX_INDEX_BYTES = 64 << 20
USER_AGENT = "snn-zoo (+https://github.com/snn-zoo)"


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


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case; ``""`` for plain paths, including Windows drive letters."""
    s = urllib.parse.urlsplit(url).scheme.lower()
    return "" if len(s) <= 1 else s


def local_path(url: str) -> Path:
    """The path of a ``file://`` URL (local hosts only) or of a plain path."""
    if scheme_of(url) == "file":
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise RemoteError(url, f"file:// URLs must be local (host {parts.netloc!r})")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url).expanduser()


def join_url(base: str, name: str) -> str:
    """``<base>/<name>`` for a remote of any scheme (a ``dvc://`` remote keeps its query after the name)."""
    scheme = scheme_of(base)
    if scheme == "":
        return str(local_path(base) / name)
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


def stream(base: str, name: str, dst: BinaryIO, *, limit: int | None, progress: bool | None = False,
           timeout: float | None = None) -> tuple[int, str]:
    """Fetch ``<base>/<name>`` into ``dst``; returns (bytes, sha256). Failures raise :class:`RemoteError`."""
    scheme = scheme_of(base)
    if scheme in ("http", "https"):
        return _stream_http(base, name, dst, limit=limit, progress=progress, timeout=timeout)
    if scheme in ("", "file"):
        return _stream_file(base, name, dst, limit=limit, progress=progress)
    if scheme == "dvc":
        return _stream_dvc(base, name, dst, limit=limit, progress=progress)
    raise RemoteError(base, f"unsupported remote scheme {scheme!r}; use http(s)://, file://, a path or dvc://")


def _stream_http(base: str, name: str, dst: BinaryIO, *, limit: int | None, progress: bool | None,
                 timeout: float | None) -> tuple[int, str]:
    """``http(s)://``: a GET with :func:`timeout_s` as the longest silence (connecting, or between two reads)."""
    url = join_url(base, name)
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    timeout = timeout_s(timeout)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (scheme checked by the caller)
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


def _stream_file(base: str, name: str, dst: BinaryIO, *, limit: int | None,
                 progress: bool | None) -> tuple[int, str]:
    """``file://`` URLs and plain paths: the local file ``<base>/<name>``."""
    p = local_path(base) / name
    try:
        f = open(p, "rb")  # noqa: SIM115
    except OSError as err:
        raise RemoteError(str(p), err.strerror or str(err)) from err
    with f:
        return _copy(f, dst, str(p), total=os.fstat(f.fileno()).st_size, limit=limit, desc=name, progress=progress)


def _stream_dvc(base: str, name: str, dst: BinaryIO, *, limit: int | None, progress: bool | None) -> tuple[int, str]:
    """``dvc://<repo>[?rev=<rev>&dir=<dir>&remote=<remote>]``: read ``<dir>/<name>`` through ``dvc.api.open``."""
    url = join_url(base, name)
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


def fetch_bytes(base: str, name: str, limit: int = MAX_INDEX_BYTES) -> bytes:
    """``<base>/<name>`` in memory (an index); more than ``limit`` bytes is a :class:`RemoteError`."""
    buf = io.BytesIO()
    n, _ = stream(base, name, buf, limit=limit, progress=False)
    if n > limit:
        raise RemoteError(join_url(base, name), f"larger than {limit} bytes")
    return buf.getvalue()
