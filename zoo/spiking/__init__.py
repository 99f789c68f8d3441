"""The spiking core: neurons (:mod:`.neuron`), other spiking layers (:mod:`.layer`) and the network
container (:mod:`.network`)."""
from zoo.spiking.layer import (
    DRAWS, ENCODERS, READOUTS, AnalogEncoder, MembraneReadout, PoissonEncoder, RateGatedMaxPool2d, Readout, Scale,
    SoftmaxReadout, SpikeCountReadout,
)
from zoo.spiking.network import SpikingNetwork, reset_net
from zoo.spiking.neuron import BaseNode, IFNode, LIFNode

__all__ = [
    "BaseNode", "IFNode", "LIFNode", "Scale", "RateGatedMaxPool2d", "AnalogEncoder", "PoissonEncoder",
    "Readout", "MembraneReadout", "SpikeCountReadout", "SoftmaxReadout", "DRAWS", "ENCODERS", "READOUTS",
    "SpikingNetwork", "reset_net",
]
