"""RobModel: the functional model with torchunlearn's methods, its weight files, and load_model."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

import funlearn as fl
from funlearn.compat.robmodel import RobModel, load_model, read_state
from funlearn.io import CheckpointError


class TorchunlearnRobModel(nn.Module):
    """torchunlearn's RobModel layout (nn/robmodel.py): the network under ``model`` plus three buffers."""

    def __init__(self, model: nn.Module, n_classes: int, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("n_classes", torch.tensor(n_classes))
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))


def _net(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


class RecordManager:
    """Stands for the object torchunlearn's trainer checkpoints pickle."""


MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def test_forward_normalises_inside_and_respects_the_mode():
    net = _net()
    rmodel = RobModel(net, n_classes=5, normalization_used={"mean": MEAN, "std": STD})
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected_eval = net.eval()(normalised)
        expected_train = net.train()(normalised)  # also updates net's running stats, like rmodel's
    torch.testing.assert_close(rmodel.eval()(x), expected_eval)
    assert rmodel.eval_accuracy([(x, expected_eval.argmax(1))]) == 100.0
    torch.testing.assert_close(rmodel.train()(x), expected_train)
    torch.testing.assert_close(rmodel.buffers["1.running_mean"], net[1].running_mean)
    module = rmodel.eval().to_module().eval()
    torch.testing.assert_close(module(x), net.eval()(normalised))


def test_identity_normalisation_is_no_normalisation():
    net = _net()
    rmodel = RobModel(net, 5, {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(rmodel.eval()(x), net.eval()(x))
    assert rmodel.fmodel.mean is None


def test_torchunlearn_files_load_and_compat_files_load_with_weights_only(tmp_path):
    source = TorchunlearnRobModel(_net(seed=3), 5, MEAN, STD)
    torch.save({"rmodel": source.state_dict()}, tmp_path / "save_dict.pth")  # torchunlearn's RobModel.save_dict
    rmodel = RobModel(_net(seed=0), 5, {"mean": MEAN, "std": STD})
    rmodel.load_dict(tmp_path / "save_dict.pth")
    for name, value in source.model.state_dict().items():
        own = rmodel.params.get(name, rmodel.buffers.get(name))
        torch.testing.assert_close(own, value)

    rmodel.save_dict(tmp_path / "compat.pth")
    loaded = torch.load(tmp_path / "compat.pth", weights_only=True)  # what torchunlearn's load_dict reads
    assert set(loaded) == {"rmodel"} and set(loaded["rmodel"]) == set(source.state_dict())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(loaded["rmodel"][name].float(), value.float())

    rmodel.save_dict(tmp_path / "compat.safetensors")
    state, _ = read_state(tmp_path / "compat.safetensors")
    torch.testing.assert_close(state["model.4.weight"], source.model[4].weight.detach())


def test_dataparallel_prefix_and_plain_state_dicts(tmp_path):
    source = _net(seed=5)
    parallel = collections.OrderedDict(("model.module." + k, v) for k, v in source.state_dict().items())
    for state in (parallel, source.state_dict()):
        rmodel = RobModel(_net(seed=0), 5)
        rmodel.load_state_dict(state)
        torch.testing.assert_close(rmodel.params["4.bias"], source[4].bias.detach())


def test_pickled_and_mismatched_files_are_refused_with_the_fix(tmp_path):
    torch.save({"rmodel": _net().state_dict(), "recordmanager": RecordManager()}, tmp_path / "last.pth")
    rmodel = RobModel(_net(), 5, {"mean": MEAN, "std": STD})
    with pytest.raises(CheckpointError, match="weights_only switched off.*'rmodel'"):
        rmodel.load_dict(tmp_path / "last.pth")
    wrong = TorchunlearnRobModel(nn.Sequential(nn.Linear(3, 5)), 5, MEAN, STD)
    torch.save({"rmodel": wrong.state_dict()}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"missing \['1.bias'.*wrong shapes \['0.weight: \(5, 3\) != \(4, 3, 3, 3\)"):
        rmodel.load_dict(tmp_path / "wrong.pth")
    torch.save({"rmodel": TorchunlearnRobModel(_net(), 7, MEAN, STD).state_dict()}, tmp_path / "seven.pth")
    with pytest.raises(ValueError, match="n_classes=7"):
        rmodel.load_dict(tmp_path / "seven.pth")
    with pytest.raises(CheckpointError, match="no weight file"):
        rmodel.load_dict(tmp_path / "missing.pth")


def test_load_model_names():
    lenet = load_model("LeNet", 10)
    assert lenet.features[0].in_channels == 1  # torchunlearn's LeNet is 1-channel 28x28
    assert load_model("ResNet10", 10).conv1.in_channels == 1  # and its ResNet10 too
    resnet = load_model("ResNet18", 100)
    assert resnet.conv1.in_channels == 3 and resnet.linear.out_features == 100
    assert load_model("ResNet18", 10, in_channels=1).conv1.in_channels == 1
    for name in ("ResNet34", "PRN18", "WRN28-10", "VGG11", "VGG16"):
        assert isinstance(load_model(name, 10), nn.Module)
    assert torch.equal(load_model("LeNet", 10).features[0].weight, lenet.features[0].weight)  # seeded
    with pytest.raises(ValueError, match="not available in funlearn; supported: LeNet"):
        load_model("DenseNet121", 10)
    with pytest.raises(ValueError, match="torchunlearn names: LeNet"):
        load_model("NoSuchNet", 10)


def test_bad_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        RobModel("resnet", 10)
    with pytest.raises(ValueError, match="n_classes must be an int"):
        RobModel(_net(), 1.5)
    with pytest.raises(ValueError, match="normalization_used must be a dict"):
        RobModel(_net(), 5, {"mu": [0.5]})
    rmodel = RobModel(_net(), 5, {"mean": MEAN, "std": STD})
    other = TorchunlearnRobModel(_net(), 5, [0.5, 0.5, 0.5], STD)
    with pytest.warns(UserWarning, match="keeping the RobModel's"):
        rmodel.load_state_dict(other.state_dict())
    assert fl.tree.global_norm(rmodel.params) > 0
