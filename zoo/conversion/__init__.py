"""Conversion: graph canonicalization, calibration, normalization, the converter and its variants."""
from zoo.conversion.calibration import ActivationStats, calibrate
from zoo.conversion.converter import build_snn, convert
from zoo.conversion.graph import ActPoint, ConversionError, canonicalize
from zoo.conversion.normalization import compute_thresholds, to_weight_form
from zoo.conversion.variants import Recipe, VariantError, get_variant, variants

__all__ = ["convert", "build_snn", "canonicalize", "calibrate", "compute_thresholds", "to_weight_form",
           "ActivationStats", "ActPoint", "ConversionError", "Recipe", "VariantError", "get_variant", "variants"]
