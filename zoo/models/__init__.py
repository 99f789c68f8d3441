"""The zoo's architectures, registered in timm's model registry (importing this package registers them).

Create them like any timm model::

    import timm, zoo.models
    model = timm.create_model("resnet20_cifar", num_classes=10, act="relu", pool=None, bias=True, bn=True)

Common kwargs (all architectures): ``num_classes``, ``in_chans``, ``act`` ("relu" | "relu6" | "clip" with
``clip_value`` | "softlif" with optional ``act_kwargs`` for :class:`SoftLIF` | "qcfs" with ``act_kwargs`` ``levels``,
``threshold``, ``channel_wise`` for :class:`QCFS`), ``pool`` ("max" | "avg"; unset =
the architecture's own choice, see ``model_info(name)["pool"]``), ``bias`` (False = zero-bias net without
BatchNorm), ``bn``, ``width`` (channel multiplier), ``drop_rate``, ``img_size`` (sets the flattened size of
nets without global pooling). ``pretrained=True`` is refused: there are no published weights to download.
"""
from __future__ import annotations

from zoo.models import cifar_inception, cifar_resnet, cifar_vgg, diehl, fang, mini  # noqa: F401  (registration)
from zoo.models._registry import model_info, registered
from zoo.models.layers import ACTIVATIONS, COMMON_KWARGS, POOLS, ArchOptions, QCFS, SoftLIF, parse_options

#: Names of the architectures registered in timm by this package.
ARCHS: list[str] = registered()

__all__ = ["ARCHS", "ACTIVATIONS", "POOLS", "COMMON_KWARGS", "ArchOptions", "QCFS", "SoftLIF", "model_info",
           "parse_options"]
