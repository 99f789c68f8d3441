"""The zoo index as a typed schema: :class:`ZooIndex`, its :class:`IndexEntry` (one model) and :class:`Variant`
(one conversion of it: its figures and, when published, its checkpoint file).

One index, ``{"schema": 1, "generated": ..., "remote": ..., "models": {name: entry}}``, is what the pipeline's
publish stage writes (:func:`zoo.hub.write_index`), what the package stage writes one entry of
(``<zoo dir>/<model>/entry.json``), what the cards are rendered from and what :func:`zoo.hub.read_index` reads.

The models check; they never rewrite: :func:`validate_index`, :func:`validate_entry` and
:func:`validate_variant` return what they were given, unchanged, so what is written is the caller's JSON, byte
for byte. Validation is strict (no coercion: ``"12"`` is not a size, ``true`` is not a number) and keys it does
not know are kept. A violation raises :class:`~zoo.hub.errors.IndexFormatError` naming the offending key, e.g.
``index.json.models['x'].variants['y'].sha256: expected 64 lowercase hex characters, got 'nope'``; a file name
that is not a plain ``<name>.safetensors`` or ``<model>/<name>.safetensors`` raises
:class:`~zoo.hub.errors.UnsafeFileError` (nothing else is ever downloaded or loaded).
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      model_validator)
from pydantic_core import PydanticCustomError

from zoo.hub.errors import IndexFormatError, UnsafeFileError

__all__ = ["SCHEMA", "ZooIndex", "IndexEntry", "Variant", "validate_index", "validate_entry", "validate_variant",
           "check_file_name"]

#: The index format's version (``"schema"``).
SCHEMA = 1

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_FILE_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._+-]*/)?[A-Za-z0-9][A-Za-z0-9._+-]*\.safetensors")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_PUBLISHED_KEYS = ("file", "size", "sha256")


# ------------------------------------------------------------------------------------------- checks
def _invalid(reason: str, *at: str, unsafe: bool = False) -> PydanticCustomError:
    """A validation error with today's wording; ``at``: the keys below the failing object that it concerns."""
    return PydanticCustomError("unsafe_file" if unsafe else "index_format", "{reason}", {"reason": reason, "at": at})


def _unsafe_reason(file: Any) -> str | None:
    if isinstance(file, str) and _FILE_RE.fullmatch(file):
        return None
    return (f"{file!r} is refused: the zoo only accepts '<name>.safetensors' or '<model>/<name>.safetensors' with "
            "plain names (no other formats are ever downloaded or unpickled; no absolute paths, '..' or deeper "
            "folders)")


def check_file_name(file: Any, where: str = "file") -> str:
    """Return ``file`` if it is ``<name>.safetensors`` or ``<folder>/<name>.safetensors`` with plain names, else
    raise :class:`UnsafeFileError`."""
    reason = _unsafe_reason(file)
    if reason:
        raise UnsafeFileError(f"{where}: {reason}")
    return file


def _name(kind: str, hint: str = ""):
    def check(name: Any) -> Any:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise _invalid(f"invalid {kind} name" + (f" {name!r} {hint}" if hint else ""))
        return name
    return check


def _timesteps(t: Any) -> Any:
    try:
        ok = isinstance(t, str) and t.isdigit() and int(t) > 0
    except ValueError:  # digits int() does not read, e.g. superscripts
        ok = False
    if not ok:
        raise _invalid("keys must be positive timestep counts written as strings")
    return t


def _sha256(sha: str) -> str:
    if not _SHA_RE.fullmatch(sha):
        raise _invalid(f"expected 64 lowercase hex characters, got {sha!r}")
    return sha


def _non_negative(size: int) -> int:
    if size < 0:
        raise _invalid(f"negative size {size}")
    return size


def _shape(shape: Any) -> Any:
    if shape is None:
        return None
    if not (isinstance(shape, (list, tuple))
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise _invalid(f"expected a list of positive ints, got {shape!r}")
    return list(shape)


def _schema_version(version: Any) -> Any:
    if version != SCHEMA:
        raise _invalid(f"expected {SCHEMA}, got {version!r}")
    return SCHEMA  # what compares equal to it passes, as it always did


def _non_empty(variants: dict) -> dict:
    if not variants:
        raise _invalid(f"expected a non-empty object, got {variants!r}")
    return variants


#: A finite JSON number (an int or a float, never a bool, NaN or infinity).
Number = Annotated[float, AllowInfNan(False)]
ModelName = Annotated[str, BeforeValidator(_name("model", "(letters, digits, '.', '_', '+', '-')"))]
VariantName = Annotated[str, BeforeValidator(_name("variant"))]
Timesteps = Annotated[str, BeforeValidator(_timesteps)]


# -------------------------------------------------------------------------------------------- models
class _Record(BaseModel):
    """Strict (no coercion), and keys the schema does not name are kept."""

    model_config = ConfigDict(strict=True, extra="allow")


class Variant(_Record):
    """One variant of a model: its measured figures, and its checkpoint when published (``file``, ``size`` and
    ``sha256`` together; without them ``rebuild`` says how to build it)."""

    accuracy: dict[Timesteps, Number | None]  # {"T": accuracy}, T a positive timestep count
    file: str | None = None  # "<model>/<variant>.safetensors", relative to the index
    size: Annotated[int, AfterValidator(_non_negative)] | None = None
    sha256: Annotated[str, AfterValidator(_sha256)] | None = None
    rebuild: str | None = None  # the command that builds an unpublished variant
    energy_ratio: Number | None = None
    spikes_per_image: Number | None = None
    synops_per_image: Number | None = None
    test_images: int | None = None
    recipe: dict | None = None
    draws: str | None = None  # zoo.spiking.layer.DRAWS for figures drawn by a stochastic SNN

    @model_validator(mode="before")
    @classmethod
    def _safe_file(cls, data: Any) -> Any:
        """A record with any of file/size/sha256 is a published checkpoint: its file name is checked first."""
        if isinstance(data, dict) and any(k in data for k in _PUBLISHED_KEYS):
            reason = _unsafe_reason(data.get("file"))
            if reason:
                raise _invalid(reason, "file", unsafe=True)
        return data

    @model_validator(mode="after")
    def _complete(self) -> Variant:
        if self.file is not None:
            if self.size is None:
                raise _invalid("missing" if "size" not in self.model_fields_set
                               else "expected int, got NoneType None", "size")
            if self.sha256 is None:
                raise _invalid("expected 64 lowercase hex characters, got None", "sha256")
        return self

    @property
    def published(self) -> bool:
        return self.file is not None


class IndexEntry(_Record):
    """One model of the zoo (the package stage's ``entry.json``)."""

    name: str  # equal to its key in the index
    arch: str
    dataset: str
    default_variant: str  # a variant with a published checkpoint
    variants: Annotated[dict[VariantName, Variant], AfterValidator(_non_empty)]
    family: str | None = None
    description: str | None = None
    notes: str | None = None
    git_commit: str | None = None
    remote: str | None = None  # where its files lie, when not next to the index
    arch_kwargs: dict | None = None
    params: dict | None = None
    input: dict | None = None  # the input normalization: source, mean, std, scale
    input_shape: Annotated[list[int] | None, BeforeValidator(_shape)] = None
    ann_accuracy: Number | None = None  # the ANN on the whole test split

    @model_validator(mode="after")
    def _default_is_published(self) -> IndexEntry:
        default = self.default_variant
        if default not in self.variants:
            raise _invalid(f"{default!r} is not one of its variants {sorted(self.variants)}", "default_variant")
        if not self.variants[default].published:
            raise _invalid("the default variant must have a published checkpoint", "variants", default, "file")
        return self


class ZooIndex(_Record):
    """A zoo's ``index.json``."""

    version: Annotated[int, BeforeValidator(_schema_version)] = Field(alias="schema")
    models: dict[ModelName, IndexEntry]
    generated: str | None = None
    remote: str | None = None  # where the files lie, when not next to the index

    @model_validator(mode="after")
    def _names_are_keys(self) -> ZooIndex:
        for key, entry in self.models.items():
            if entry.name != key:
                raise _invalid(f"must equal its key {key!r}, got {entry.name!r}", "models", key, "name")
        return self


# ---------------------------------------------------------------------------------------- validation
_MAPS = {"models", "variants", "accuracy"}  # fields whose next location part is a key
_EXPECTED = {"string_type": "str", "int_type": "int", "dict_type": "an object", "model_type": "an object",
             "float_type": "a finite number", "finite_number": "a finite number"}


def _where(source: str, loc: tuple) -> str:
    out, keyed = source, False
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part!r}]" if keyed else f".{part}"
        keyed = not keyed and part in _MAPS
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind in _EXPECTED:
        value = error.get("input")
        return f"expected {_EXPECTED[kind]}, got {type(value).__name__} {_short(value)}"
    return error["msg"]


def _index_format_error(err: ValidationError, source: str) -> IndexFormatError:
    """The first problem (a refused file name first of all) as an :class:`IndexFormatError`."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "unsafe_file"), errors[0])
    loc = tuple(first["loc"]) + tuple((first.get("ctx") or {}).get("at", ()))
    if not loc and first["type"] == "model_type":
        return IndexFormatError(f"{source}: expected a JSON object, got {type(first['input']).__name__}")
    cls = UnsafeFileError if first["type"] == "unsafe_file" else IndexFormatError
    return cls(f"{_where(source, loc)}: {_message(first)}")


def _validate(model: type[BaseModel], obj: Any, source: str) -> BaseModel:
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        raise _index_format_error(err, source) from None


def validate_index(index: Any, source: str = "index") -> dict:
    """Check ``index`` against :class:`ZooIndex` and return it unchanged.

    Raises :class:`IndexFormatError` (or :class:`UnsafeFileError`) naming the offending key.
    """
    _validate(ZooIndex, index, source)
    return index


def validate_entry(entry: Any, source: str = "entry", name: str | None = None) -> dict:
    """Check one model's entry against :class:`IndexEntry` (and, given ``name``, that it is its ``"name"``) and
    return it unchanged; errors as :func:`validate_index`'s, named from ``source``."""
    parsed = _validate(IndexEntry, entry, source)
    if name is not None and parsed.name != name:
        raise IndexFormatError(f"{source}.name: must equal its key {name!r}, got {parsed.name!r}")
    return entry


def validate_variant(variant: Any, source: str = "variant") -> dict:
    """Check one variant record against :class:`Variant` and return it unchanged (errors as
    :func:`validate_index`'s)."""
    _validate(Variant, variant, source)
    return variant
