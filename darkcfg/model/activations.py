"""Darknet's activations (activations.c), each following the reference formula.

Where the reference's CPU `activate()` has no case and returns 0 (relu6, swish, mish, hard_mish,
normalize_channels* outside conv/shortcut), the intended (GPU) semantics are used instead: the formula.
All functions map a tensor (B, C, H, W) -- or (B, N) -- to one of the same shape.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


def linear(x: Tensor) -> Tensor:
    return x


def loggy(x: Tensor) -> Tensor:
    return 2.0 * torch.sigmoid(x) - 1.0


def relu6(x: Tensor) -> Tensor:
    return x.clamp(0.0, 6.0)


def elu(x: Tensor) -> Tensor:
    return torch.where(x >= 0, x, torch.expm1(x))


def selu(x: Tensor) -> Tensor:
    # the reference's constants (1.0507, 1.6732), not torch.selu's longer ones
    return torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x))


def gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(0.797885 * x + 0.035677 * x * x * x))


def relie(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, 0.01 * x)


def ramp(x: Tensor) -> Tensor:
    return x * (x > 0) + 0.1 * x


def leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


def plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2.0)
    # C's n % 2 keeps the sign, so only even n (incl. negative even) take the first branch
    return torch.where(torch.fmod(n, 2) == 0, half, (x - n) + half)


def hardtan(x: Tensor) -> Tensor:
    return x.clamp(-1.0, 1.0)


def lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def mish(x: Tensor) -> Tensor:
    # softplus with threshold 20 as the reference; F.mish computes the same x*tanh(softplus(x))
    return F.mish(x)


def hard_mish(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, torch.where(x > -2, 0.5 * x * x + x, torch.zeros_like(x)))


def normalize_channels(x: Tensor) -> Tensor:
    """Per pixel across channels (dim 1): x / (1e-4 + sum of positive x), 0 where x <= 0."""
    pos = x.clamp(min=0)
    return pos / (1e-4 + pos.sum(dim=1, keepdim=True))


def normalize_channels_softmax(x: Tensor) -> Tensor:
    e = torch.exp(x)
    return e / (1e-4 + e.sum(dim=1, keepdim=True))


def normalize_channels_softmax_maxval(x: Tensor) -> Tensor:
    e = torch.exp(x - x.amax(dim=1, keepdim=True))
    return e / (1e-4 + e.sum(dim=1, keepdim=True))


ACTIVATIONS: dict[str, Activation] = {
    "linear": linear,
    "logistic": torch.sigmoid,
    "loggy": loggy,
    "relu": F.relu,
    "relu6": relu6,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "relie": relie,
    "ramp": ramp,
    "leaky": leaky,
    "revleaky": leaky,
    "tanh": torch.tanh,
    "plse": plse,
    "stair": stair,
    "hardtan": hardtan,
    "lhtan": lhtan,
    "swish": swish,
    "mish": mish,
    "hard_mish": hard_mish,
    "normalize_channels": normalize_channels,
    "normalize_channels_softmax": normalize_channels_softmax,
    "normalize_channels_softmax_maxval": normalize_channels_softmax_maxval,
}


# The same functions writing into their input (the inference path applies them to a fresh conv output).
INPLACE_ACTIVATIONS: dict[str, Activation] = {
    "linear": linear,
    "logistic": torch.sigmoid_,
    "relu": F.relu_,
    "relu6": lambda x: x.clamp_(0.0, 6.0),
    "leaky": lambda x: F.leaky_relu_(x, 0.1),
    "revleaky": lambda x: F.leaky_relu_(x, 0.1),
    "tanh": torch.tanh_,
    "hardtan": lambda x: x.clamp_(-1.0, 1.0),
    "mish": lambda x: F.mish(x, inplace=True),
}


def get_activation(name: str) -> Activation:
    """The activation called `name`; raises KeyError for an unknown name (callers decide the fallback)."""
    return ACTIVATIONS[name]
