"""VGG nets for 32x32 inputs.

* :func:`vgg16_cifar`: VGG-16 (Simonyan & Zisserman 2015), the CIFAR variant of Sengupta et al. 2019.
* :func:`cao_cifar`: a shallow tailored CNN after Cao, Chen & Khosla 2015 for the bias-free recipes (``cao2015``,
  ``diehl2015-*``): six conv3x3 layers, average pooling, no biases and no batch norm by default, so that the
  network the converter sees is the network that was trained. Few layers keep the SNN's latency short.
"""
from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import CIFAR_MEAN, CIFAR_STD, finish, make_cfg
from zoo.models.layers import ArchOptions, init_weights, parse_options

VGG16_LAYOUT: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                 512, 512, 512, "M"]
CAO_LAYOUT: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, "M"]

default_cfgs = {
    "vgg16_cifar": make_cfg(
        "vgg16_cifar", family="vgg", dataset="cifar10", input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
        first_conv="features.0.0", classifier="fc",
        description="VGG-16 for 32x32: 13 conv3x3 + BN + act, 5 pools, classifier 512-512-classes with dropout",
        defaults=dict(pool="max", drop_rate=0.5),
        pool_applies="the five 2x2 pooling layers (default max)"),
    "cao_cifar": make_cfg(
        "cao_cifar", family="vgg", dataset="cifar10", input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
        first_conv="features.0.0", classifier="fc",
        description="Tailored CNN for 32x32 (after Cao et al. 2015): c64-c64-A-c128-c128-A-c256-c256-A, global "
                    "average pool, fc256, fc; no biases, no batch norm, average pooling",
        defaults=dict(pool="avg", drop_rate=0.2, bias=False),
        pool_applies="the three 2x2 pooling layers (default avg: linear, so a spike count passes exactly)"),
}


class VGG(nn.Module):
    """Plain VGG: conv3x3 blocks and 2x2 pools per ``layout``, global average pool (the identity on 32x32
    inputs, where the feature map is 1x1), then ``Dropout -> Linear(c, hidden) -> act -> Dropout -> Linear``."""

    def __init__(self, layout: list[int | str], opts: ArchOptions, hidden: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = opts.in_chans
        for v in layout:
            if v == "M":
                layers.append(opts.pool_layer("max", 2))
            else:
                layers.append(opts.conv(c, opts.ch(int(v)), 3))
                c = opts.ch(int(v))
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        hidden = opts.ch(hidden)
        self.pre_logits = nn.Sequential(nn.Dropout(opts.drop_rate), opts.linear(c, hidden, norm=False),
                                        nn.Dropout(opts.drop_rate))
        self.num_features = hidden
        self.fc = opts.classifier(hidden)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.pre_logits(self.flatten(self.global_pool(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


@register_model
def vgg16_cifar(pretrained: bool = False, **kwargs: Any) -> VGG:
    """VGG-16 for CIFAR (32x32). Kwargs: see :func:`zoo.models.layers.parse_options`."""
    opts, _ = parse_options("vgg16_cifar", kwargs, pretrained=pretrained,
                            defaults=dict(drop_rate=0.5, img_size=32, in_chans=3))
    return finish(VGG(VGG16_LAYOUT, opts), default_cfgs["vgg16_cifar"], opts)


@register_model
def cao_cifar(pretrained: bool = False, **kwargs: Any) -> VGG:
    """Tailored bias-free CNN for CIFAR (32x32) after Cao et al. 2015. Kwargs: see
    :func:`zoo.models.layers.parse_options` (``bias=True`` with ``bn=False`` gives the same net with biases, e.g.
    for soft-LIF training)."""
    opts, _ = parse_options("cao_cifar", kwargs, pretrained=pretrained,
                            defaults=dict(drop_rate=0.2, img_size=32, in_chans=3, pool="avg", bias=False))
    return finish(VGG(CAO_LAYOUT, opts, hidden=256), default_cfgs["cao_cifar"], opts)
