"""Tiny networks for scikit-learn's digits (1x8x8 images, 10 classes): they train to > 95 % test accuracy in
seconds on a CPU and exercise the same conversion paths as their big siblings (pooling, residual adds).

* :func:`vgg_mini`: conv32-conv32-pool-conv64-conv64-pool-fc128-fc.
* :func:`resnet_mini`: stem conv16, basic blocks 16 -> 32 (stride 2, projection shortcut) -> 32, avg pool, fc.
"""
from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import DIGITS_MEAN, DIGITS_STD, finish, make_cfg
from zoo.models.cifar_resnet import _POOL_DOC, ResNet
from zoo.models.layers import ArchOptions, init_weights, parse_options

_DEFAULTS = dict(img_size=8, in_chans=1)

default_cfgs = {
    "vgg_mini": make_cfg(
        "vgg_mini", family="vgg", dataset="digits", input_size=(1, 8, 8), mean=DIGITS_MEAN, std=DIGITS_STD,
        first_conv="features.0.0", classifier="fc",
        description="VGG-style net for 8x8 digits: conv32-conv32-pool-conv64-conv64-pool-fc128-fc",
        defaults=dict(pool="max", drop_rate=0.2), pool_applies="the two 2x2 pooling layers (default max)"),
    "resnet_mini": make_cfg(
        "resnet_mini", family="resnet", dataset="digits", input_size=(1, 8, 8), mean=DIGITS_MEAN, std=DIGITS_STD,
        first_conv="stem.0", classifier="fc",
        description="ResNet-style net for 8x8 digits: stem conv16, blocks 16, 32 (stride 2, projection), 32",
        defaults=dict(pool=None), pool_applies=_POOL_DOC),
}


class VGGMini(nn.Module):
    def __init__(self, opts: ArchOptions, hidden: int = 128) -> None:
        super().__init__()
        o = opts
        c1, c2 = o.ch(32), o.ch(64)
        self.features = nn.Sequential(o.conv(o.in_chans, c1, 3), o.conv(c1, c1, 3), o.pool_layer("max", 2),
                                      o.conv(c1, c2, 3), o.conv(c2, c2, 3), o.pool_layer("max", 2))
        h, w = o.img_size[0] // 4, o.img_size[1] // 4
        if h < 1 or w < 1:
            raise ValueError(f"vgg_mini needs inputs of at least 4x4, got img_size={o.img_size}")
        self.flatten = nn.Flatten(1)
        hidden = o.ch(hidden)
        self.pre_logits = nn.Sequential(o.linear(c2 * h * w, hidden, norm=False), nn.Dropout(o.drop_rate))
        self.num_features = hidden
        self.fc = o.classifier(hidden)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pre_logits(self.flatten(self.features(x))))

    def get_classifier(self) -> nn.Module:
        return self.fc


@register_model
def vgg_mini(pretrained: bool = False, **kwargs: Any) -> VGGMini:
    """VGG-style net for 1x8x8 digits (``img_size`` sets the flattened size for other inputs)."""
    opts, _ = parse_options("vgg_mini", kwargs, pretrained=pretrained, defaults=dict(_DEFAULTS, drop_rate=0.2))
    return finish(VGGMini(opts), default_cfgs["vgg_mini"], opts)


@register_model
def resnet_mini(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-style net for 1x8x8 digits (any input size: global average pooling)."""
    opts, _ = parse_options("resnet_mini", kwargs, pretrained=pretrained, defaults=dict(_DEFAULTS))
    return finish(ResNet([1, 2], [16, 32], opts), default_cfgs["resnet_mini"], opts)
