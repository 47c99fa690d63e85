"""Model names, parsed without building anything (stdlib only, so both trainers can check a config).

The config key ``model`` names the network for both trainers: ``resnet<6n+2>`` is the
ResNet-CIFAR family (the E²-Train paper's ResNet-38/74/110, and the digits calibration's
ResNet-8/14), ``mobilenetv2[_<width>]``, and the other papers' networks (VGG, He et al.'s
ResNet-18/34/50, DenseNet-121, paper 003's modified AlexNet). ``resnet50`` is He et al.'s
network (the papers' name); the CIFAR ResNet of depth 50 is ``resnet50-cifar``.
"""
from __future__ import annotations

import re

PAPER_RESNETS = (18, 34, 50)          # He et al.'s ImageNet ResNets keep their papers' names
MODEL_FORMS = ("resnet<6n+2> (resnet8, resnet14, resnet20, resnet38, resnet74, resnet110; resnet<6n+2>-cifar), "
               "mobilenetv2[_<width>], vgg11, vgg16, vgg19, resnet18, resnet34, resnet50, densenet121 or "
               "modified_alexnet")


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_cifar", "cifar")


def parse_paper_model(key: str) -> tuple[str, int] | None:
    """('vgg', 16), ('resnet-he', 50), ('densenet', 121) for a normalised name, else None."""
    m = re.fullmatch(r"vgg(11|16|19)", key)
    if m:
        return "vgg", int(m.group(1))
    m = re.fullmatch(r"resnet(18|34|50)", key)
    if m:
        return "resnet-he", int(m.group(1))
    if key == "densenet121":
        return "densenet", 121
    return None


def parse_model(name: str) -> tuple[str, float]:
    """('resnet', depth), ('mobilenetv2', width), ('modified_alexnet', 0.0) or one of the other
    papers' models (('vgg', 11|16|19), ('resnet-he', 18|34|50), ('densenet', 121)) for a model
    name; ValueError naming the accepted forms otherwise."""
    key = _key(name)
    paper = parse_paper_model(key)
    if paper is not None:
        return paper
    m = re.fullmatch(r"resnet(\d+)(?:cifar)?", key)
    if m and int(m.group(1)) >= 8 and (int(m.group(1)) - 2) % 6 == 0:
        return "resnet", int(m.group(1))
    m2 = re.fullmatch(r"mobilenetv2(?:_(\d+(?:\.\d*)?))?", key)
    if m2 and float(m2.group(1) or 1.0) > 0:
        return "mobilenetv2", float(m2.group(1) or 1.0)
    if key.replace("_", "") == "modifiedalexnet":     # paper 003's model (modified_alexnet.py)
        return "modified_alexnet", 0.0
    raise ValueError(f"unknown model {name!r}: use {MODEL_FORMS}")


def resnet_cifar_depth(name: str) -> int | None:
    """The depth of a ResNet-CIFAR model name, None for any other model (ValueError if unknown)."""
    kind, arg = parse_model(name)
    return int(arg) if kind == "resnet" else None


def resnet_cifar_name(depth: int) -> str:
    """The canonical name of the ResNet-CIFAR of this depth (``resnet50-cifar`` beside He's)."""
    return f"resnet{depth}-cifar" if depth in PAPER_RESNETS else f"resnet{depth}"
