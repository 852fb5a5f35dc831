"""Model zoo: small MNIST-sized networks, CIFAR ResNets/PreAct-ResNet/WRN/VGG, any torchvision
classifier, and a name registry (:func:`create_model`).

Models are plain ``nn.Module``s that take already-normalised inputs; funlearn's functional wrapper
applies the dataset mean/std.
"""

from funlearn.models.preact_resnet import PreActBlock, PreActResNet, preact_resnet18
from funlearn.models.registry import ModelFactory, available_models, create_model, register_model
from funlearn.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet10,
    resnet18,
    resnet34,
    resnet50,
)
from funlearn.models.small import MLP, LeNet, SmallCNN
from funlearn.models.torchvision_models import torchvision_model, torchvision_model_names
from funlearn.models.vgg import VGG, vgg11, vgg13, vgg16, vgg19
from funlearn.models.wide_resnet import WideResNet, wide_resnet28_10

__all__ = [
    "create_model",
    "available_models",
    "register_model",
    "ModelFactory",
    "SmallCNN",
    "LeNet",
    "MLP",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "PreActBlock",
    "PreActResNet",
    "preact_resnet18",
    "WideResNet",
    "wide_resnet28_10",
    "VGG",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "torchvision_model",
    "torchvision_model_names",
]
