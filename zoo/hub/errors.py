"""The zoo hub's errors: each ``str(err)`` is a complete one-line message."""
from __future__ import annotations

__all__ = ["HubError", "ModelNotFoundError", "VariantNotFoundError", "NotPublishedError", "IndexFormatError",
           "UnsafeFileError", "RemoteError", "ChecksumError"]


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
