import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from funlearn.models import (
    MLP,
    VGG,
    BasicBlock,
    Bottleneck,
    LeNet,
    PreActResNet,
    ResNet,
    SmallCNN,
    WideResNet,
    available_models,
    create_model,
    register_model,
    registry,
)

# (in_channels, image_size, num_classes) each registered model must support.
SUPPORTED = {
    "small_cnn": [(1, 28, 10), (1, 8, 10), (3, 32, 100)],
    "lenet": [(1, 28, 10), (3, 32, 7)],
    "mlp": [(1, 28, 10), (1, 8, 10), (3, 32, 7)],
    "resnet10": [(3, 32, 10), (1, 28, 7)],
    "resnet18": [(3, 32, 100), (1, 28, 7)],
    "resnet34": [(3, 32, 10), (1, 16, 7)],
    "resnet50": [(3, 32, 10), (1, 16, 7)],
    "preact_resnet18": [(3, 32, 10), (1, 28, 7)],
    "wide_resnet28_10": [(3, 32, 100), (1, 16, 7)],
    "vgg11": [(3, 32, 10), (1, 64, 7)],
    "vgg13": [(3, 32, 10), (1, 32, 7)],
    "vgg16": [(3, 32, 10), (1, 64, 7)],
    "vgg19": [(3, 32, 100), (1, 32, 7)],
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_supported_table_covers_every_registered_model():
    assert sorted(SUPPORTED) == available_models()


@pytest.mark.parametrize(
    "name,in_channels,image_size,num_classes",
    [(name, *combo) for name, combos in SUPPORTED.items() for combo in combos],
)
def test_model_outputs_batch_by_num_classes(name, in_channels, image_size, num_classes):
    net = create_model(
        name, num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, image_size, image_size))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name,count",
    [
        # kuangliu/pytorch-cifar and Zagoruyko & Komodakis values for 10 classes.
        ("resnet18", 11_173_962),
        ("resnet50", 23_520_842),
        ("preact_resnet18", 11_172_170),  # PreActResNet18 (11,171,146) plus the final BN
        ("wide_resnet28_10", 36_479_194),
        ("vgg16", 14_728_266),
    ],
)
def test_parameter_counts_match_reference_architectures(name, count):
    with torch.device("meta"):
        assert n_params(create_model(name, num_classes=10)) == count


def test_resnet50_is_built_from_bottleneck_blocks():
    with torch.device("meta"):
        net = create_model("resnet50", num_classes=10)
    blocks = [m for m in net.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert len(blocks) == 16 and all(isinstance(b, Bottleneck) for b in blocks)
    assert net.linear.in_features == 2048


@pytest.mark.parametrize(
    "alias,cls",
    [
        ("ResNet18", ResNet),
        ("resnet18", ResNet),
        ("PRN18", PreActResNet),
        ("WRN28-10", WideResNet),
        ("VGG16", VGG),
        ("vgg16_bn", VGG),
        ("LeNet", LeNet),
        ("small_cnn", SmallCNN),
        ("SmallCNN", SmallCNN),
    ],
)
def test_aliases_are_case_insensitive(alias, cls):
    with torch.device("meta"):
        assert type(create_model(alias, num_classes=5, image_size=32)) is cls


def test_vgg_accepts_32_and_64_but_rejects_smaller_images():
    net = create_model("vgg11", num_classes=10)
    with torch.no_grad():
        for size in (32, 64):
            assert net(torch.randn(2, 3, size, size)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 32x32"):
        create_model("vgg11", num_classes=10, image_size=16)


def test_seeded_creation_is_deterministic_and_keeps_global_rng():
    before = torch.get_rng_state()
    a = create_model("resnet10", num_classes=10, seed=3)
    b = create_model("resnet10", num_classes=10, seed=3)
    c = create_model("resnet10", num_classes=10, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])


def test_unknown_name_error_lists_available_models():
    with pytest.raises(ValueError) as err:
        create_model("resnet9000", num_classes=10)
    message = str(err.value)
    assert "'resnet9000'" in message and "torchvision:<name>" in message
    assert all(name in message for name in available_models())


def test_torchvision_model_builds_offline_with_num_classes():
    net = create_model("torchvision:resnet18", num_classes=7)
    gray = create_model("torchvision:resnet18", num_classes=7, in_channels=1)
    assert gray.conv1.in_channels == 1
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
        assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_torchvision_googlenet_returns_logits_tensor():
    net = create_model("torchvision:googlenet", num_classes=7, init_weights=False)
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_unknown_torchvision_name_lists_torchvision_models():
    with pytest.raises(ValueError, match=r"unknown torchvision model 'resnet9000'.*resnet18"):
        create_model("torchvision:resnet9000", num_classes=10)


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "preact_resnet18", "wide_resnet28_10", "vgg11"]
)
def test_group_norm_option_has_no_batch_norm(name):
    with torch.device("meta"):
        net = create_model(name, num_classes=10, norm="group")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())


def test_group_norm_resnet_gives_per_sample_gradients_under_vmap():
    net = create_model("resnet10", num_classes=4, in_channels=1, norm="group", seed=0)
    params = {k: v.detach() for k, v in net.named_parameters()}
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 3])

    def loss(p, xi, yi):
        logits = functional_call(net, p, (xi[None],))
        return nn.functional.cross_entropy(logits, yi[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    first = grad(loss)(params, x[0], y[0])
    assert per_sample["linear.weight"].shape == (3, 4, 512)
    torch.testing.assert_close(per_sample["conv1.weight"][0], first["conv1.weight"])


def test_mlp_needs_a_size_and_infers_in_features():
    with pytest.raises(ValueError, match="image_size"):
        create_model("mlp", num_classes=10)
    net = create_model("mlp", num_classes=10, in_channels=3, image_size=32, hidden_sizes=(64,))
    assert isinstance(net, MLP) and net.layers[1].in_features == 3 * 32 * 32
    assert create_model("mlp", num_classes=10, in_features=64).layers[1].in_features == 64


def test_lenet_rejects_images_too_small_for_its_convs():
    with pytest.raises(ValueError, match="at least 12x12"):
        create_model("lenet", num_classes=10, image_size=8)


def test_register_model_adds_a_factory_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))

    def linear_probe(*, num_classes, in_channels, image_size, **kwargs):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))

    register_model("linear_probe", linear_probe, aliases=("Probe",))
    assert "linear_probe" in available_models()
    net = create_model("PROBE", num_classes=3, in_channels=1, image_size=4)
    assert net(torch.randn(2, 1, 4, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("ResNet18", linear_probe)
    with pytest.raises(ValueError, match="torchvision:"):
        register_model("torchvision:mine", linear_probe)
