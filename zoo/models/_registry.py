"""Zoo-side bookkeeping for the architectures registered in timm: default cfgs and :func:`model_info`."""
from __future__ import annotations

import copy
from typing import Any

from torch import nn

from zoo.models.layers import ArchOptions

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
DIGITS_MEAN = (0.3053,)  # sklearn digits / 16, all 1797 images
DIGITS_STD = (0.3760,)

_INFO: dict[str, dict[str, Any]] = {}


def make_cfg(name: str, *, family: str, dataset: str, input_size: tuple[int, int, int], mean: tuple, std: tuple,
             first_conv: str, classifier: str = "fc", num_classes: int = 10, description: str = "",
             defaults: dict | None = None, pool_applies: str = "") -> dict[str, Any]:
    """Record an architecture's zoo info and return its timm default cfg (a plain dict, no weights)."""
    _INFO[name] = dict(name=name, family=family, dataset=dataset, input_size=tuple(input_size),
                       num_classes=num_classes, mean=tuple(mean), std=tuple(std), defaults=dict(defaults or {}),
                       pool=pool_applies, description=description)
    return dict(url="", num_classes=num_classes, input_size=tuple(input_size), pool_size=None, crop_pct=1.0,
                interpolation="bilinear", mean=tuple(mean), std=tuple(std), first_conv=first_conv,
                classifier=classifier, license="apache-2.0", description=description)


def finish(model: nn.Module, cfg: dict[str, Any], opts: ArchOptions) -> nn.Module:
    """Attach timm's cfg attributes (``pretrained_cfg``/``default_cfg``) and the resolved options."""
    pcfg = dict(cfg, architecture=opts.name, num_classes=opts.num_classes,
                input_size=(opts.in_chans, *opts.img_size))
    if opts.in_chans != cfg["input_size"][0]:  # normalization constants of another channel count are meaningless
        pcfg["mean"] = tuple([sum(cfg["mean"]) / len(cfg["mean"])] * opts.in_chans)
        pcfg["std"] = tuple([sum(cfg["std"]) / len(cfg["std"])] * opts.in_chans)
    model.pretrained_cfg = pcfg
    model.default_cfg = pcfg
    model.num_classes = opts.num_classes
    model.zoo_options = opts
    return model


def model_info(name: str) -> dict[str, Any]:
    """What the zoo knows about a registered architecture: ``family`` ("vgg", "resnet", "inception", "fcn",
    "convnet"), the intended ``dataset``, default ``input_size`` (C, H, W), ``num_classes``, normalization
    ``mean``/``std``, per-architecture kwarg ``defaults`` and what ``pool`` controls in it."""
    import zoo.models  # noqa: F401  (registers everything)

    if name not in _INFO:
        raise KeyError(f"unknown zoo architecture {name!r}; registered: {sorted(_INFO)}")
    return copy.deepcopy(_INFO[name])


def registered() -> list[str]:
    return list(_INFO)
