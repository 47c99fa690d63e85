"""The other papers' models (VGG-11/16/19, ResNet-18/34/50, DenseNet-121, CIFAR stems): the
registry builds them, their sizes are the published architectures', their sequential units
compose to their forward (Learn&Drop), and GSkip's layers cover them."""
import pytest
import torch

from e2train.torch.methods.layers import model_layers
from e2train.torch.methods.learn_drop import check_units, sequential_units
from e2train.torch.models import build_model, parse_model

# parameters for 10 classes: the CIFAR versions of He et al. / Huang et al. (as in the widely
# used pytorch-cifar definitions); VGG with BN and bias-free convolutions (the conv bias is
# redundant before BN) and one linear classifier
SIZES = {"vgg11": 9_228_362, "vgg16": 14_724_042, "vgg19": 20_035_018, "resnet18": 11_173_962,
         "resnet34": 21_282_122, "resnet50": 23_520_842, "densenet121": 6_956_298}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_builds_with_the_published_size_and_runs_small_inputs(name):
    m = build_model(name, 3, 10)
    assert sum(p.numel() for p in m.parameters()) == SIZES[name]
    assert build_model(name, 1, 10)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", ["vgg11", "resnet18", "densenet121"])
def test_units_compose_to_the_forward_and_layers_cover_every_parameter(name):
    m = build_model(name, 1, 10)
    units = sequential_units(m)
    check_units(m, units, torch.randn(2, 1, 8, 8))      # raises if they differ
    assert units[-1].name == "head" and not units[-1].scored
    # one GSkip layer per convolution or linear layer (its batch norm joins it)
    n_weighted = sum(isinstance(x, (torch.nn.Conv2d, torch.nn.Linear)) for x in m.modules())
    assert len(model_layers(m)) == n_weighted


def test_names_resolve_and_the_cifar_family_stays_reachable():
    assert parse_model("ResNet-50") == ("resnet-he", 50)
    assert parse_model("resnet50-cifar") == ("resnet", 50)
    assert parse_model("vgg16") == ("vgg", 16) and parse_model("densenet121") == ("densenet", 121)
    with pytest.raises(ValueError, match="vgg11, vgg16, vgg19"):
        parse_model("vgg13")
    with pytest.raises(ValueError, match="SLU gates need residual blocks"):
        build_model("vgg11", 3, 10, gated=True)
