"""A small Inception-V3 family network for 32x32 inputs (Szegedy et al. 2016, "Rethinking the Inception
architecture"), about 2 M parameters at width 1.

Layout (channels at width 1, spatial size for a 32x32 input)::

    stem        3x conv3x3 (32, 32, 64)                                   32x32
    mixed_a1/2  Inception-A: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | pool->1x1   32x32  -> 128, 144
    reduce_a    conv3x3/2 | 1x1->3x3->3x3/2 | pool/2                      16x16  -> 288
    mixed_b1/2  Inception-B (factorized 7x7: 1x7 / 7x1)                   16x16  -> 384
    reduce_b    1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | pool/2                 8x8   -> 640
    mixed_c     Inception-C (expanded 1x3 / 3x1 branches, concatenated)    8x8   -> 672
    head        global avg pool, dropout, linear

Branches are joined with ``torch.cat(.., 1)``; every conv is conv + BN + act. ``pool`` unset keeps
Inception-V3's choice (3x3/1 average pooling in the pool branches, 2x2 max pooling in the reductions);
``pool='max'`` or ``'avg'`` makes all of them that kind.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import CIFAR_MEAN, CIFAR_STD, finish, make_cfg
from zoo.models.layers import ArchOptions, init_weights, parse_options


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, o: ArchOptions) -> None:
        super().__init__()
        c1, c5r, c5, c3r, c3 = o.ch(32), o.ch(24), o.ch(32), o.ch(32), o.ch(48)
        self.branch1x1 = o.conv(cin, c1, 1)
        self.branch5x5 = nn.Sequential(o.conv(cin, c5r, 1), o.conv(c5r, c5, 5))
        self.branch3x3dbl = nn.Sequential(o.conv(cin, c3r, 1), o.conv(c3r, c3, 3), o.conv(c3, c3, 3))
        self.branch_pool = nn.Sequential(o.pool_layer("avg", 3, 1, 1), o.conv(cin, o.ch(pool_features), 1))
        self.out_channels = c1 + c5 + c3 + o.ch(pool_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class ReductionA(nn.Module):
    def __init__(self, cin: int, o: ArchOptions) -> None:
        super().__init__()
        c3, c3r, c3d = o.ch(96), o.ch(32), o.ch(48)
        self.branch3x3 = o.conv(cin, c3, 3, 2)
        self.branch3x3dbl = nn.Sequential(o.conv(cin, c3r, 1), o.conv(c3r, c3d, 3), o.conv(c3d, c3d, 3, 2))
        self.branch_pool = o.pool_layer("max", 2)
        self.out_channels = c3 + c3d + cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionB(nn.Module):
    """Inception-V3's 17x17 module (timm's ``InceptionC``): 7x7 convolutions factorized into 1x7 and 7x1."""

    def __init__(self, cin: int, c7: int, o: ArchOptions) -> None:
        super().__init__()
        c, c7 = o.ch(96), o.ch(c7)
        self.branch1x1 = o.conv(cin, c, 1)
        self.branch7x7 = nn.Sequential(o.conv(cin, c7, 1), o.conv(c7, c7, (1, 7)), o.conv(c7, c, (7, 1)))
        self.branch7x7dbl = nn.Sequential(o.conv(cin, c7, 1), o.conv(c7, c7, (7, 1)), o.conv(c7, c7, (1, 7)),
                                          o.conv(c7, c7, (7, 1)), o.conv(c7, c, (1, 7)))
        self.branch_pool = nn.Sequential(o.pool_layer("avg", 3, 1, 1), o.conv(cin, c, 1))
        self.out_channels = 4 * c

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x)], 1)


class ReductionB(nn.Module):
    def __init__(self, cin: int, o: ArchOptions) -> None:
        super().__init__()
        r, c3 = o.ch(96), o.ch(160)
        self.branch3x3 = nn.Sequential(o.conv(cin, r, 1), o.conv(r, c3, 3, 2))
        self.branch7x7x3 = nn.Sequential(o.conv(cin, r, 1), o.conv(r, r, (1, 7)), o.conv(r, r, (7, 1)),
                                         o.conv(r, r, 3, 2))
        self.branch_pool = o.pool_layer("max", 2)
        self.out_channels = c3 + r + cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch7x7x3(x), self.branch_pool(x)], 1)


class InceptionC(nn.Module):
    """Inception-V3's 8x8 module (timm's ``InceptionE``): expanded filter bank with parallel 1x3 / 3x1 convs."""

    def __init__(self, cin: int, o: ArchOptions) -> None:
        super().__init__()
        c1, c3, cp = o.ch(96), o.ch(128), o.ch(64)
        self.branch1x1 = o.conv(cin, c1, 1)
        self.branch3x3_1 = o.conv(cin, c3, 1)
        self.branch3x3_2a = o.conv(c3, c3, (1, 3))
        self.branch3x3_2b = o.conv(c3, c3, (3, 1))
        self.branch3x3dbl_1 = nn.Sequential(o.conv(cin, c3, 1), o.conv(c3, c3, 3))
        self.branch3x3dbl_3a = o.conv(c3, c3, (1, 3))
        self.branch3x3dbl_3b = o.conv(c3, c3, (3, 1))
        self.branch_pool = nn.Sequential(o.pool_layer("avg", 3, 1, 1), o.conv(cin, cp, 1))
        self.out_channels = c1 + 4 * c3 + cp

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_1(x)
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        return torch.cat([b1, b3, bd, self.branch_pool(x)], 1)


class InceptionCifar(nn.Module):
    def __init__(self, opts: ArchOptions) -> None:
        super().__init__()
        o = opts
        self.stem = nn.Sequential(o.conv(o.in_chans, o.ch(32), 3), o.conv(o.ch(32), o.ch(32), 3),
                                  o.conv(o.ch(32), o.ch(64), 3))
        blocks: list[nn.Module] = []
        c = o.ch(64)
        for make in (lambda c: InceptionA(c, 16, o), lambda c: InceptionA(c, 32, o), lambda c: ReductionA(c, o),
                     lambda c: InceptionB(c, 64, o), lambda c: InceptionB(c, 80, o), lambda c: ReductionB(c, o),
                     lambda c: InceptionC(c, o)):
            block = make(c)
            blocks.append(block)
            c = block.out_channels
        names = ["mixed_a1", "mixed_a2", "reduce_a", "mixed_b1", "mixed_b2", "reduce_b", "mixed_c"]
        self.blocks = nn.Sequential(OrderedDict(zip(names, blocks)))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(o.drop_rate)
        self.num_features = c
        self.fc = o.classifier(c)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.flatten(self.global_pool(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


default_cfgs = {
    "inception_cifar": make_cfg(
        "inception_cifar", family="inception", dataset="cifar10", input_size=(3, 32, 32), mean=CIFAR_MEAN,
        std=CIFAR_STD, first_conv="stem.0.0", classifier="fc",
        description="Inception-V3 family net for 32x32: stem, 2x Inception-A, reduction, 2x Inception-B "
                    "(1x7/7x1), reduction, Inception-C (1x3/3x1), ~2 M parameters",
        defaults=dict(pool=None, drop_rate=0.2),
        pool_applies="unset: avg 3x3/1 in pool branches, max 2x2 in reductions; 'max'/'avg': all pools"),
}


@register_model
def inception_cifar(pretrained: bool = False, **kwargs: Any) -> InceptionCifar:
    """Small Inception-V3 for CIFAR (32x32)."""
    opts, _ = parse_options("inception_cifar", kwargs, pretrained=pretrained,
                            defaults=dict(drop_rate=0.2, img_size=32, in_chans=3))
    return finish(InceptionCifar(opts), default_cfgs["inception_cifar"], opts)
