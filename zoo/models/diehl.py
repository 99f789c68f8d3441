"""The MNIST networks of Diehl et al. 2015, "Fast-classifying, high-accuracy spiking deep networks through
weight and threshold balancing" (IJCNN): zero-bias ReLU nets without BatchNorm by default.

* :func:`diehl_fcn`: fully connected 784-1200-1200-10.
* :func:`diehl_convnet`: 12c5 - 2s - 64c5 - 2s - 10o (5x5 valid convs, 2x2 average pooling, linear output).
"""
from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import MNIST_MEAN, MNIST_STD, finish, make_cfg
from zoo.models.layers import ArchOptions, init_weights, parse_options

_DEFAULTS = dict(bias=False, img_size=28, in_chans=1)

default_cfgs = {
    "diehl_fcn": make_cfg(
        "diehl_fcn", family="fcn", dataset="mnist", input_size=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD,
        first_conv="", classifier="fc",
        description="Diehl et al. 2015 fully connected net 784-1200-1200-10, zero bias",
        defaults=dict(bias=False, bn=False, drop_rate=0.2), pool_applies="nothing (no pooling layers)"),
    "diehl_convnet": make_cfg(
        "diehl_convnet", family="convnet", dataset="mnist", input_size=(1, 28, 28), mean=MNIST_MEAN,
        std=MNIST_STD, first_conv="features.0.0", classifier="fc",
        description="Diehl et al. 2015 ConvNet 12c5-2s-64c5-2s-10o, zero bias",
        defaults=dict(bias=False, bn=False, pool="avg"), pool_applies="the two 2x2 subsampling layers (default avg)"),
}


class DiehlFCN(nn.Module):
    def __init__(self, opts: ArchOptions, hidden: int = 1200) -> None:
        super().__init__()
        h = opts.ch(hidden)
        n_in = opts.in_chans * opts.img_size[0] * opts.img_size[1]
        self.flatten = nn.Flatten(1)
        self.fc1 = opts.linear(n_in, h)
        self.drop1 = nn.Dropout(opts.drop_rate)
        self.fc2 = opts.linear(h, h)
        self.drop2 = nn.Dropout(opts.drop_rate)
        self.num_features = h
        self.fc = opts.classifier(h)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop1(self.fc1(self.flatten(x)))
        x = self.drop2(self.fc2(x))
        return self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc


class DiehlConvNet(nn.Module):
    def __init__(self, opts: ArchOptions) -> None:
        super().__init__()
        c1, c2 = opts.ch(12), opts.ch(64)
        self.features = nn.Sequential(
            opts.conv(opts.in_chans, c1, 5, padding=0), opts.pool_layer("avg", 2),
            opts.conv(c1, c2, 5, padding=0), opts.pool_layer("avg", 2))
        h, w = opts.img_size
        h, w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"diehl_convnet needs inputs of at least 16x16, got img_size={opts.img_size}")
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(opts.drop_rate)
        self.num_features = c2 * h * w
        self.fc = opts.classifier(self.num_features)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.flatten(self.features(x))))

    def get_classifier(self) -> nn.Module:
        return self.fc


@register_model
def diehl_fcn(pretrained: bool = False, **kwargs: Any) -> DiehlFCN:
    """Diehl et al. 2015 FCN, 784-1200-1200-10 (``img_size``/``in_chans`` set the input layer)."""
    opts, _ = parse_options("diehl_fcn", kwargs, pretrained=pretrained, defaults=dict(_DEFAULTS, drop_rate=0.2))
    return finish(DiehlFCN(opts), default_cfgs["diehl_fcn"], opts)


@register_model
def diehl_convnet(pretrained: bool = False, **kwargs: Any) -> DiehlConvNet:
    """Diehl et al. 2015 ConvNet, 12c5-2s-64c5-2s-10o, for 28x28 inputs."""
    opts, _ = parse_options("diehl_convnet", kwargs, pretrained=pretrained, defaults=dict(_DEFAULTS, pool="avg"))
    return finish(DiehlConvNet(opts), default_cfgs["diehl_convnet"], opts)
