"""Models by name: ``create_model("resnet18", num_classes=10)``, ``"torchvision:<name>"``, and
``register_model`` for your own architectures.

Names are matched case-insensitively, with ``-`` read as ``_`` (``"WRN28-10"`` is
``"wrn28_10"``). A factory is called as ``factory(num_classes=..., in_channels=...,
image_size=..., **kwargs)``; ``image_size`` (the side of a square input, or None) sizes models
whose layers depend on it and is checked against the smallest input a model accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from funlearn.models.preact_resnet import preact_resnet18
from funlearn.models.resnet import resnet10, resnet18, resnet34, resnet50
from funlearn.models.small import MLP, LeNet, SmallCNN
from funlearn.models.torchvision_models import torchvision_model
from funlearn.models.vgg import vgg11, vgg13, vgg16, vgg19
from funlearn.models.wide_resnet import wide_resnet28_10

__all__ = ["ModelFactory", "create_model", "available_models", "register_model"]

ModelFactory = Callable[..., nn.Module]

_TORCHVISION_PREFIX = "torchvision:"

_FACTORIES: dict[str, ModelFactory] = {}
_ALIASES: dict[str, str] = {}  # normalised alias or name -> registered name


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_model(name: str, factory: ModelFactory, *, aliases: tuple[str, ...] = ()) -> None:
    """Register ``factory`` under ``name`` (and ``aliases``) for :func:`create_model`.

    ``factory`` is called with keyword arguments ``num_classes``, ``in_channels``, ``image_size``
    (an int or None) and any extra ``kwargs`` given to :func:`create_model`. Raises ValueError if
    a name or alias is already taken or uses the ``torchvision:`` prefix.
    """
    key = _normalise(name)
    keys = [key, *(_normalise(alias) for alias in aliases)]
    for k in keys:
        if k.startswith(_TORCHVISION_PREFIX):
            raise ValueError(f"model names may not start with {_TORCHVISION_PREFIX!r}: {k!r}")
        if k in _ALIASES:
            raise ValueError(f"model name {k!r} is already registered (as {_ALIASES[k]!r})")
    _FACTORIES[key] = factory
    _ALIASES.update(dict.fromkeys(keys, key))


def available_models() -> list[str]:
    """Registered model names, sorted (aliases and ``torchvision:<name>`` are accepted too)."""
    return sorted(_FACTORIES)


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the model registered as ``name``, or ``torchvision:<name>`` with random weights.

    ``kwargs`` go to the model's constructor (e.g. ``norm="group"`` for the ResNets, VGGs and
    WRN; ``hidden_sizes`` for the MLP). With ``seed``, the weights are initialised from
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``: the same seed gives the same
    weights and the global RNG state is left as it was.
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be positive, got {num_classes} and {in_channels}"
        )
    key = _normalise(name)
    if key.startswith(_TORCHVISION_PREFIX):
        build = partial(
            torchvision_model,
            key.removeprefix(_TORCHVISION_PREFIX),
            num_classes=num_classes,
            in_channels=in_channels,
            **kwargs,
        )
    elif key in _ALIASES:
        build = partial(
            _FACTORIES[_ALIASES[key]],
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            **kwargs,
        )
    else:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}, "
            "or 'torchvision:<name>' for any torchvision classification model"
        )
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build()


def _size_agnostic(
    builder: Callable[..., nn.Module], name: str, min_image_size: int
) -> ModelFactory:
    """Factory for a model whose layers do not depend on the input size (at least the minimum)."""

    def factory(
        *, num_classes: int, in_channels: int, image_size: int | None, **kwargs: Any
    ) -> nn.Module:
        if image_size is not None and image_size < min_image_size:
            raise ValueError(
                f"{name} needs images of at least {min_image_size}x{min_image_size}, "
                f"got {image_size}"
            )
        return builder(num_classes=num_classes, in_channels=in_channels, **kwargs)

    return factory


def _lenet(
    *, num_classes: int, in_channels: int, image_size: int | None, **kwargs: Any
) -> nn.Module:
    size = 28 if image_size is None else image_size
    return LeNet(num_classes=num_classes, in_channels=in_channels, image_size=size, **kwargs)


def _mlp(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int | None,
    in_features: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    if in_features is None:
        if image_size is None:
            raise ValueError("mlp needs image_size (or in_features) to size its first layer")
        in_features = in_channels * image_size * image_size
    return MLP(in_features, num_classes, **kwargs)


def _register_builtins() -> None:
    register_model("small_cnn", _size_agnostic(SmallCNN, "small_cnn", 4), aliases=("smallcnn",))
    register_model("lenet", _lenet, aliases=("lenet5",))
    register_model("mlp", _mlp)
    for builder in (resnet10, resnet18, resnet34, resnet50):
        register_model(builder.__name__, _size_agnostic(builder, builder.__name__, 1))
    register_model(
        "preact_resnet18",
        _size_agnostic(preact_resnet18, "preact_resnet18", 1),
        aliases=("prn18", "preactresnet18"),
    )
    register_model(
        "wide_resnet28_10",
        _size_agnostic(wide_resnet28_10, "wide_resnet28_10", 1),
        aliases=("wrn28_10", "wrn_28_10", "wideresnet28_10"),
    )
    for builder in (vgg11, vgg13, vgg16, vgg19):
        register_model(
            builder.__name__,
            _size_agnostic(builder, builder.__name__, 32),
            aliases=(f"{builder.__name__}_bn",),
        )


_register_builtins()
