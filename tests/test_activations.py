"""Each activation against its formula in DARKNET_SEMANTICS.md section 3, evaluated in scalar Python."""
import math

import pytest
import torch

from darkcfg.model.activations import ACTIVATIONS


def sig(x):
    return 1 / (1 + math.exp(-x))


def softplus(x):
    return x if x > 20 else (math.exp(x) if x < -20 else math.log(math.exp(x) + 1))


def stair(x):
    n = math.floor(x)
    return math.floor(x / 2) if math.fmod(n, 2) == 0 else (x - n) + math.floor(x / 2)


SCALAR = {
    "linear": lambda x: x,
    "logistic": sig,
    "loggy": lambda x: 2 * sig(x) - 1,
    "relu": lambda x: x * (x > 0),
    "relu6": lambda x: min(max(x, 0), 6),
    "elu": lambda x: x if x >= 0 else math.exp(x) - 1,
    "selu": lambda x: 1.0507 * x if x >= 0 else 1.0507 * 1.6732 * (math.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(0.797885 * x + 0.035677 * x ** 3)),
    "relie": lambda x: x if x > 0 else 0.01 * x,
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "leaky": lambda x: x if x > 0 else 0.1 * x,
    "revleaky": lambda x: x if x > 0 else 0.1 * x,
    "tanh": lambda x: 2 / (1 + math.exp(-2 * x)) - 1,
    "plse": lambda x: 0.01 * (x + 4) if x < -4 else (0.01 * (x - 4) + 1 if x > 4 else 0.125 * x + 0.5),
    "stair": stair,
    "hardtan": lambda x: min(max(x, -1), 1),
    "lhtan": lambda x: 0.001 * x if x < 0 else (0.001 * (x - 1) + 1 if x > 1 else x),
    "swish": lambda x: x * sig(x),
    "mish": lambda x: x * math.tanh(softplus(x)),
    "hard_mish": lambda x: x if x > 0 else (x * x / 2 + x if x > -2 else 0),
}

POINTS = [-30.0, -7.5, -4.0, -3.3, -2.0, -1.5, -1.0, -0.3, 0.0, 0.25, 0.9, 1.0, 1.7, 3.0, 4.0, 5.5, 6.0, 7.2, 25.0]


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_activation_formula(name):
    x = torch.tensor(POINTS, dtype=torch.float64)
    got = ACTIVATIONS[name](x).tolist()
    want = [SCALAR[name](v) for v in POINTS]
    for v, g, w in zip(POINTS, got, want):
        assert g == pytest.approx(w, rel=1e-6, abs=1e-9), f"{name}({v})"


def test_normalize_channels_variants_across_channels():
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, -1.0]], dtype=torch.float64).T.reshape(1, 3, 1, 2)
    for pix in range(2):
        vals = x[0, :, 0, pix].tolist()
        s = 1e-4 + sum(v for v in vals if v > 0)
        want = [v / s if v > 0 else 0 for v in vals]
        assert ACTIVATIONS["normalize_channels"](x)[0, :, 0, pix].tolist() == pytest.approx(want)
        e = [math.exp(v) for v in vals]
        assert ACTIVATIONS["normalize_channels_softmax"](x)[0, :, 0, pix].tolist() == pytest.approx(
            [v / (1e-4 + sum(e)) for v in e])
        m = max(vals)
        e = [math.exp(v - m) for v in vals]
        assert ACTIVATIONS["normalize_channels_softmax_maxval"](x)[0, :, 0, pix].tolist() == pytest.approx(
            [v / (1e-4 + sum(e)) for v in e])
