"""Any torchvision classification model, built by name with random weights (never downloaded).

``num_classes`` is passed to the torchvision builder; for ``in_channels != 3`` the first 3-channel
convolution (the stem, in every torchvision classifier) is rebuilt for the new channel count.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision import models as tv_models

__all__ = ["torchvision_model", "torchvision_model_names"]

# Builders that return (logits, aux_logits) named tuples in train mode unless told otherwise.
_AUX_LOGITS = frozenset({"googlenet", "inception_v3"})


def torchvision_model_names() -> list[str]:
    """Names of the torchvision classification models, e.g. ``"resnet18"``, ``"vit_b_16"``."""
    return tv_models.list_models(module=tv_models)


def torchvision_model(
    name: str, *, num_classes: int, in_channels: int = 3, **kwargs: Any
) -> nn.Module:
    """Build ``torchvision.models.<name>`` with ``weights=None`` and ``num_classes`` outputs.

    Extra ``kwargs`` go to the torchvision builder. GoogLeNet and Inception-v3 default to
    ``aux_logits=False`` so that they return a logits tensor. For ``in_channels != 3`` the stem
    conv gets ``in_channels`` inputs; its weights repeat the initialised RGB filters cyclically,
    scaled by ``sqrt(3 / in_channels)`` to keep the output variance of the original initialisation.
    """
    names = torchvision_model_names()
    if name not in names:
        raise ValueError(f"unknown torchvision model {name!r}; available: {', '.join(names)}")
    if name in _AUX_LOGITS:
        kwargs.setdefault("aux_logits", False)
    model = tv_models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        _adapt_stem(model, name, in_channels)
    return model


def _adapt_stem(model: nn.Module, name: str, in_channels: int) -> None:
    """Replace the first ``Conv2d`` of ``model`` (which must take 3 channels) in place."""
    convs = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs or convs[0][1].in_channels != 3 or convs[0][1].groups != 1:
        raise ValueError(
            f"cannot adapt torchvision model {name!r} to in_channels={in_channels}: "
            "its first Conv2d is not an ungrouped 3-channel convolution"
        )
    path, stem = convs[0]
    conv = nn.Conv2d(
        in_channels,
        stem.out_channels,
        stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        dilation=stem.dilation,
        bias=stem.bias is not None,
        padding_mode=stem.padding_mode,
    )
    with torch.no_grad():
        repeat = torch.arange(in_channels) % 3
        conv.weight.copy_(stem.weight[:, repeat] * math.sqrt(3 / in_channels))
        if stem.bias is not None:
            conv.bias.copy_(stem.bias)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, conv)
