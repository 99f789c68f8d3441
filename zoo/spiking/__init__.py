"""The spiking core: neurons (:mod:`.neuron`), surrogate spike functions for training them
(:mod:`.surrogate`), TSSL-BP's backward pass (:mod:`.tssl`), other spiking layers (:mod:`.layer`) and the
network container (:mod:`.network`)."""
from zoo.spiking.layer import (
    DRAWS, ENCODERS, READOUTS, AnalogEncoder, MembraneReadout, PoissonEncoder, RateGatedMaxPool2d, Readout, Scale,
    SoftmaxReadout, SpikeCountReadout,
)
from zoo.spiking.network import MultiStep, SpikingNetwork, multi_step, reset_net
from zoo.spiking.neuron import BaseNode, IFNode, LIFNode, PLIFNode, TSSLNode
from zoo.spiking.surrogate import ATan, Sigmoid, Surrogate

__all__ = [
    "BaseNode", "IFNode", "LIFNode", "PLIFNode", "TSSLNode", "Surrogate", "ATan", "Sigmoid", "Scale",
    "RateGatedMaxPool2d", "AnalogEncoder", "PoissonEncoder", "Readout", "MembraneReadout", "SpikeCountReadout",
    "SoftmaxReadout", "DRAWS", "ENCODERS", "READOUTS", "SpikingNetwork", "MultiStep", "multi_step", "reset_net",
]
