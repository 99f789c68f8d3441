"""CIFAR ResNets (He et al. 2016, section 4.2): 3 stages of 16/32/64 channels with n basic blocks each
(depth 6n + 2), option-B projection shortcuts (1x1 conv + BN) where the shape changes, global average pool,
linear classifier. Also the tiny :func:`resnet_mini` for scikit-learn digits lives in :mod:`zoo.models.mini`.
"""
from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import CIFAR_MEAN, CIFAR_STD, finish, make_cfg
from zoo.models.layers import ArchOptions, init_weights, parse_options


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, ``out = out + shortcut``, act.

    The shortcut is the identity, or when stride or channels change a projection: He et al.'s option B
    (1x1 conv with stride + BN) by default, or with ``pool`` set ``pool(2) -> 1x1 conv -> BN``."""

    def __init__(self, cin: int, cout: int, stride: int, opts: ArchOptions) -> None:
        super().__init__()
        self.conv1 = opts.conv(cin, cout, 3, stride)
        self.conv2 = opts.conv(cout, cout, 3, 1, act=False)
        if stride != 1 or cin != cout:
            layers: list[nn.Module] = []
            if opts.pool is not None and stride != 1:
                layers += [opts.pool_layer(kernel_size=stride), nn.Conv2d(cin, cout, 1, bias=opts.bias and not opts.bn)]
            else:
                layers += [nn.Conv2d(cin, cout, 1, stride, bias=opts.bias and not opts.bn)]
            if opts.bn:
                layers.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*layers)
        else:
            self.shortcut = nn.Sequential()
        self.act = opts.act_layer(cout)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        out = out + self.shortcut(x)
        return self.act(out)


class ResNet(nn.Module):
    """Stem conv3x3, stages of :class:`BasicBlock` (first block of stages after the first has stride 2), global
    average pool, flatten, [dropout], linear."""

    def __init__(self, blocks_per_stage: list[int], channels: list[int], opts: ArchOptions,
                 stem_channels: int | None = None) -> None:
        super().__init__()
        c = opts.ch(stem_channels or channels[0])
        self.stem = opts.conv(opts.in_chans, c, 3)
        stages = []
        for i, (n, ch) in enumerate(zip(blocks_per_stage, channels)):
            ch = opts.ch(ch)
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c, ch, 2 if (b == 0 and i > 0) else 1, opts))
                c = ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(opts.drop_rate)
        self.num_features = c
        self.fc = opts.classifier(c)
        init_weights(self)
        if not opts.bn:  # no BN to tame the residual sum: start every block close to the identity
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.conv2[0].weight.data.mul_(0.1)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.flatten(self.global_pool(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


_POOL_DOC = ("projection shortcuts: unset = He et al. option B (strided 1x1 conv + BN); 'max'/'avg' = "
             "pool(2) then 1x1 conv + BN")
default_cfgs = {}
for _depth in (20, 32, 44, 56):
    _n = (_depth - 2) // 6
    default_cfgs[f"resnet{_depth}_cifar"] = make_cfg(
        f"resnet{_depth}_cifar", family="resnet", dataset="cifar10", input_size=(3, 32, 32), mean=CIFAR_MEAN,
        std=CIFAR_STD, first_conv="stem.0", classifier="fc",
        description=f"ResNet-{_depth} for CIFAR (He et al. 2016): 3 stages x {_n} basic blocks, 16/32/64 channels",
        defaults=dict(pool=None), pool_applies=_POOL_DOC)


def _cifar_resnet(name: str, depth: int, pretrained: bool, kwargs: dict[str, Any]) -> ResNet:
    opts, _ = parse_options(name, kwargs, pretrained=pretrained, defaults=dict(img_size=32, in_chans=3))
    n = (depth - 2) // 6
    return finish(ResNet([n, n, n], [16, 32, 64], opts), default_cfgs[name], opts)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-20 for CIFAR (0.27 M parameters)."""
    return _cifar_resnet("resnet20_cifar", 20, pretrained, kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-32 for CIFAR (0.46 M parameters)."""
    return _cifar_resnet("resnet32_cifar", 32, pretrained, kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-44 for CIFAR (0.66 M parameters)."""
    return _cifar_resnet("resnet44_cifar", 44, pretrained, kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-56 for CIFAR (0.85 M parameters)."""
    return _cifar_resnet("resnet56_cifar", 56, pretrained, kwargs)
