"""snn-zoo: turn trained ANNs into spiking neural networks, and a zoo of ready-made spiking models.

Public API::

    import zoo
    snn = zoo.convert(model, calibration_data, variant="rueckauer2017", percentile=99.9)
    result = zoo.simulate(snn, test_data, timesteps=[1, 2, 4, 8, 16, 32])
    zoo.variants()                      # the named conversion recipes
    snn = zoo.load("sresnet20-cifar10") # a published spiking model, downloaded and verified
    ann = zoo.load("sresnet20-cifar10", ann=True)  # the trained ANN it holds (BN folded), to fine-tune

Where things live: neurons and spiking layers in :mod:`zoo.spiking`, the converter in :mod:`zoo.conversion`
(graph, calibration, normalization, variants), simulation and measurement in :mod:`zoo.simulation`, architectures in
:mod:`zoo.models`, the published zoo in :mod:`zoo.hub`, the pipeline's stages in :mod:`zoo.stages` and its
configuration in :mod:`zoo.config`. Attributes are imported lazily so ``import zoo`` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "convert": "zoo.conversion.converter",
    "calibrate": "zoo.conversion.calibration",
    "ActivationStats": "zoo.conversion.calibration",
    "ConversionError": "zoo.conversion.graph",
    "variants": "zoo.conversion.variants",
    "get_variant": "zoo.conversion.variants",
    "Recipe": "zoo.conversion.variants",
    "VariantError": "zoo.conversion.variants",
    "simulate": "zoo.simulation",
    "SimulationResult": "zoo.simulation",
    "SpikingNetwork": "zoo.spiking.network",
    "reset_net": "zoo.spiking.network",
    "load_snn": "zoo.serialization",
    "save_snn": "zoo.serialization",
    "test_data": "zoo.hub",
    "load_nir": "zoo.interchange.nir",
    "export_snn": "zoo.interchange",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


def load(name: str, variant: str | None = None, *, ann: bool = False):
    """Download (or take from the cache), verify and load a published spiking model, or with ``ann=True`` the
    trained ANN it was converted from: see :func:`zoo.hub.load`."""
    from zoo.hub import load as _load

    return _load(name, variant, ann=ann)


__all__ = ["convert", "simulate", "variants", "load", "get_variant", "calibrate", "Recipe", "SimulationResult",
           "SpikingNetwork", "ActivationStats", "ConversionError", "VariantError", "reset_net", "load_snn",
           "save_snn", "test_data", "load_nir", "export_snn", "__version__"]
