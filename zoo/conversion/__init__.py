"""Conversion: graph canonicalization (:mod:`.graph`), calibration statistics (:mod:`.calibration`),
normalization (:mod:`.normalization`), the converter (:mod:`.converter`), its named variants (:mod:`.variants`),
calibrated corrections (:mod:`.correction`) and the ANN inside a converted network (:mod:`.ann`). Imported
lazily: ``zoo.conversion.variants`` needs no torch."""
from __future__ import annotations

import importlib

_LAZY = {
    "convert": "converter", "build_snn": "converter", "canonicalize": "graph", "ActPoint": "graph",
    "ConversionError": "graph", "calibrate": "calibration", "ActivationStats": "calibration",
    "compute_thresholds": "normalization", "to_weight_form": "normalization", "Recipe": "variants",
    "VariantError": "variants", "get_variant": "variants", "variants": "variants",
    "fit_corrections": "correction", "ann_from_snn": "ann", "init_from_ann": "ann",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"zoo.conversion.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'zoo.conversion' has no attribute {name!r}")


__all__ = list(_LAZY)
