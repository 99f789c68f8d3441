"""Looking models up in the index: an entry by name, a variant of it, the summary rows of ``zoo list``."""
from __future__ import annotations

import copy
import difflib

from zoo.hub.errors import ModelNotFoundError, NotPublishedError, VariantNotFoundError
from zoo.hub.index import read_index

__all__ = ["index_or_read", "get_entry", "resolve_variant", "published_variant", "best_result", "ann_reference",
           "list_models", "info"]


def index_or_read(index: dict | None) -> dict:
    """``index``, else the index :func:`~zoo.hub.read_index` reads."""
    return read_index() if index is None else index


def get_entry(index: dict, name: str) -> dict:
    """The entry of model ``name`` (not a copy); :class:`ModelNotFoundError` suggests close names."""
    models = index.get("models", {})
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        raise ModelNotFoundError(f"no model {name!r} in the zoo{hint} (`zoo list` shows all {len(models)} "
                                 "models)")
    return models[name]


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
    index = index_or_read(index)
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
    return copy.deepcopy(get_entry(index_or_read(index), name))
