"""The convolutional SNN of Fang et al. 2021, "Incorporating learnable membrane time constants to enhance
learning of spiking neural networks" (ICCV), at a width that trains on a CPU.

* :func:`plif_convnet`: ``{c3-BN-PLIF-MP2} x stages - dropout - fc(hidden) - PLIF - dropout - fc(classes)``.
  Fang et al.'s MNIST net is 2 stages of 128 channels and fc 2048-100 with a voting layer; here the channels
  (``channels``, default 64-128) and the hidden layer (``hidden``, default 256) are parameters, and the last
  layer's output current, averaged over the timesteps, is the class score (cross-entropy; Fang et al. vote
  with spiking output neurons and an MSE loss on their rates).

With ``act="plif"`` (the default) every activation is a :class:`zoo.spiking.PLIFNode`: the model is the body of
a multi-step SNN, run for T steps by :func:`zoo.spiking.multi_step` (training) or by the converter's
``fang2021`` recipe, which folds the BatchNorms and keeps the trained neurons (:func:`zoo.convert`). With
``act="relu"`` it is the same net as an ANN.
"""
from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from zoo.models._registry import MNIST_MEAN, MNIST_STD, finish, make_cfg
from zoo.models.layers import ArchOptions, init_weights, parse_options

default_cfgs = {
    "plif_convnet": make_cfg(
        "plif_convnet", family="convnet", dataset="mnist", input_size=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD,
        first_conv="features.0.0", classifier="fc",
        description="Fang et al. 2021 spiking ConvNet: {c3-BN-PLIF-MP2} x 2 - fc - PLIF - fc, learnable tau",
        defaults=dict(act="plif", pool="max", drop_rate=0.5, channels=(64, 128), hidden=256),
        pool_applies="the 2x2 pooling after each stage (default max: spike max-pooling, an OR of spikes)"),
}


class PLIFConvNet(nn.Module):
    def __init__(self, opts: ArchOptions, channels: tuple[int, ...] = (64, 128), hidden: int = 256) -> None:
        super().__init__()
        o = opts
        layers: list[nn.Module] = []
        cin = o.in_chans
        for c in channels:
            c = o.ch(c)
            layers += [o.conv(cin, c, 3), o.pool_layer("max", 2)]
            cin = c
        self.features = nn.Sequential(*layers)
        h, w = o.img_size[0] >> len(channels), o.img_size[1] >> len(channels)
        if h < 1 or w < 1:
            raise ValueError(f"plif_convnet with {len(channels)} stages needs inputs of at least "
                             f"{2 ** len(channels)} px, got img_size={o.img_size}")
        self.flatten = nn.Flatten(1)
        hidden = o.ch(hidden)
        self.pre_logits = nn.Sequential(nn.Dropout(o.drop_rate), o.linear(cin * h * w, hidden, norm=False),
                                        nn.Dropout(o.drop_rate))
        self.num_features = hidden
        self.fc = o.classifier(hidden)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pre_logits(self.flatten(self.features(x))))

    def get_classifier(self) -> nn.Module:
        return self.fc


@register_model
def plif_convnet(pretrained: bool = False, **kwargs: Any) -> PLIFConvNet:
    """Fang et al.'s spiking ConvNet (``channels`` per stage, ``hidden`` units; ``act_kwargs`` for the PLIF
    neurons: ``tau_init``, ``v_reset``, ``detach_reset``, ``surrogate``, ``alpha``)."""
    d = default_cfgs["plif_convnet"]
    defaults = dict(act="plif", pool="max", drop_rate=0.5, img_size=28, in_chans=1)
    opts, extra = parse_options("plif_convnet", kwargs, pretrained=pretrained, defaults=defaults,
                                extra=("channels", "hidden"))
    net = PLIFConvNet(opts, tuple(int(c) for c in extra.get("channels", (64, 128))), int(extra.get("hidden", 256)))
    return finish(net, d, opts)
