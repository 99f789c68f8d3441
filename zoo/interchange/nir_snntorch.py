"""A second simulator for the NIR export: the graph run by snnTorch's neurons (``snntorch.Leaky``), wired by
``nirtorch.nir_to_torch``. ``tests/test_nir.py`` checks that it scores what :func:`zoo.simulate` scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.interchange.nir import NIRExportError, _module_from_nir, _nir, node_meta


def snntorch_network(graph: Any) -> nn.Module:
    """The graph as an snnTorch network (``snntorch.Leaky`` neurons, wired by ``nirtorch.nir_to_torch``).

    snnTorch 1.0's own ``import_from_nir`` maps ``nir.IF`` to ``Leaky(beta=0.9)``, a *leaky* neuron, and
    ignores the reset rule, and its ``nir.Flatten`` (like nirtorch's) reads NIR's batch-less dims as torch's,
    so a batch is flattened into one sample; here ``nir.IF`` becomes ``Leaky(beta=1)`` (no leak: integrate-and-fire) with the
    reset the metadata names. The other nodes are mapped by snnTorch's own importer. Refused, with
    :class:`NIRExportError`: what snnTorch's neurons cannot do exactly (initial membranes, calibrated
    corrections, LIF with exponential decay and refractory period, Poisson input, spiking softmax).
    """
    nir = _nir()
    import nirtorch
    import snntorch as snn
    from snntorch.import_nir import _nir_to_snntorch_module

    if isinstance(graph, (str, Path)):
        graph = nir.read(str(graph))
    gm = node_meta(graph)
    if gm.get("encoder", {}).get("kind", "analog") != "analog":
        raise NIRExportError("snnTorch runs this graph with the image as a constant input current (analog); "
                             "this model draws Poisson spikes from it, which snnTorch would not reproduce")
    if gm.get("readout", {}).get("kind") == "softmax":
        raise NIRExportError("the spiking softmax readout draws random output spikes; snnTorch has no such readout")

    def leaky(node):
        m = node_meta(node)
        if m.get("v_init") or m.get("v_offset") is not None or m.get("current") is not None:
            raise NIRExportError("snnTorch's Leaky starts from a zero membrane and has no input current: this "
                                 "variant's initial membranes (v_init, calibrated v_offset) or currents would be "
                                 "lost; run it in snn-zoo or in onnxruntime (--format onnx)")
        return snn.Leaky(beta=1.0, threshold=torch.from_numpy(np.asarray(node.v_threshold, dtype=np.float32)),
                         reset_mechanism=m.get("reset", "zero"), init_hidden=True, reset_delay=False)

    def refuse_lif(node):
        raise NIRExportError("snnTorch's Leaky decays by beta = 1 - dt/tau per step and has no refractory period "
                             "or output filter; this LIF neuron (exp(-dt/tau), tau_ref, synaptic filter) would "
                             "change its dynamics")

    node_map = {t: (lambda n: _nir_to_snntorch_module(n, init_hidden=True))
                for t in (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d)}
    # Scale and Flatten as snn-zoo imports them (snnTorch has no Scale; its Flatten also flattens the batch)
    node_map.update({nir.IF: leaky, nir.LIF: refuse_lif, nir.Scale: lambda n: _module_from_nir("scale", n),
                     nir.Flatten: lambda n: _module_from_nir("flatten", n)})
    return nirtorch.nir_to_torch(graph, node_map)


@torch.no_grad()
def run_snntorch(net: nn.Module, x: torch.Tensor, timesteps: int, readout: str = "membrane") -> torch.Tensor:
    """Run an :func:`snntorch_network` for ``timesteps`` steps on images ``x`` from a zero state and return the
    class scores ``[B, K]``: the summed output current (membrane readout) or spike counts (spike count readout:
    the graph ends in the readout neuron, so its output already is spikes)."""
    import snntorch as snn

    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron) and hasattr(m, "mem"):
            m.mem = torch.zeros(0)  # snnTorch starts a fresh membrane when its shape does not match the input
    total, state = None, None
    for _ in range(timesteps):
        out, state = net(x) if state is None else net(x, state)
        total = out if total is None else total + out
    return total


__all__ = ["snntorch_network", "run_snntorch"]
