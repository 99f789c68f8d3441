"""snn-zoo: turn trained ANNs into spiking neural networks, and a zoo of ready-made spiking models.

Public API::

    import zoo
    snn = zoo.convert(model, calibration_data, variant="rueckauer2017", percentile=99.9)
    result = zoo.simulate(snn, test_data, timesteps=[1, 2, 4, 8, 16, 32])
    zoo.variants()                      # the named conversion recipes
    snn = zoo.load("sresnet20-cifar10") # a published spiking model, downloaded and verified
"""
from __future__ import annotations

__version__ = "0.1.0"

from zoo.conversion import ActivationStats, ConversionError, Recipe, VariantError, calibrate, get_variant  # noqa: E402
from zoo.conversion import convert as convert  # noqa: E402
from zoo.conversion.variants import variants  # noqa: E402
from zoo.simulate import SimulationResult, simulate  # noqa: E402
from zoo.spiking import SpikingNetwork, reset_net  # noqa: E402


def load(name: str, variant: str | None = None):
    """Download (or take from the cache), verify and load a published spiking model: see :mod:`zoo.hub`."""
    from zoo.hub import load as _load

    return _load(name, variant)


__all__ = ["convert", "simulate", "variants", "load", "get_variant", "calibrate", "Recipe", "SimulationResult",
           "SpikingNetwork", "ActivationStats", "ConversionError", "VariantError", "reset_net", "__version__"]
