"""Classifier training as `darknet classifier train` does it: labels from the path (fill_truth_smooth), the
augmentation of load_data_augment (rotate_crop_image, distort_image), and the [softmax] + [cost] gradient. The
slow references here are line-by-line transcriptions of the C (image.c, data.c, softmax_layer.c, cost_layer.c,
blas.c), written from its source as the comments name it."""
import math

import numpy as np
import pytest
import torch

from darkcfg.model.network import Darknet
from darkcfg.train.classify_data import distort, fill_truth, hsv_to_rgb, rgb_to_hsv, rotate_crop


def _get_pixel_extend(im, x, y, c):  # image.c: 0 outside the image
    _, h, w = im.shape
    return 0.0 if x < 0 or x >= w or y < 0 or y >= h else float(im[c, y, x])


def _rotate_crop_image(im, rad, s, w, h, dx, dy, aspect):  # image.c:rotate_crop_image + bilinear_interpolate
    c_, ih, iw = im.shape
    cx, cy = iw / 2.0, ih / 2.0
    out = np.zeros((c_, h, w), np.float32)
    for c in range(c_):
        for y in range(h):
            for x in range(w):
                rx = np.float32(math.cos(rad) * ((x - w / 2.0) / s * aspect + dx / s * aspect)
                                - math.sin(rad) * ((y - h / 2.0) / s + dy / s) + cx)
                ry = np.float32(math.sin(rad) * ((x - w / 2.0) / s * aspect + dx / s * aspect)
                                + math.cos(rad) * ((y - h / 2.0) / s + dy / s) + cy)
                ix, iy = int(math.floor(rx)), int(math.floor(ry))
                fx, fy = rx - ix, ry - iy
                out[c, y, x] = ((1 - fy) * (1 - fx) * _get_pixel_extend(im, ix, iy, c)
                                + fy * (1 - fx) * _get_pixel_extend(im, ix, iy + 1, c)
                                + (1 - fy) * fx * _get_pixel_extend(im, ix + 1, iy, c)
                                + fy * fx * _get_pixel_extend(im, ix + 1, iy + 1, c))
    return out


@pytest.mark.parametrize("rad,s,dx,dy,aspect", [(0.0, 1.0, 0, 0, 1.0), (0.2, 1.7, 3.5, -2.0, 0.8),
                                                 (-0.5, 0.6, -1.0, 4.0, 1.3)])
def test_rotate_crop_equals_the_reference(rad, s, dx, dy, aspect):
    im = np.random.default_rng(1).random((3, 9, 13)).astype(np.float32)
    got = rotate_crop(im, rad, s, 11, 7, dx, dy, aspect)
    assert np.abs(got - _rotate_crop_image(im, rad, s, 11, 7, dx, dy, aspect)).max() < 1e-5


def _hsv_pixel(r, g, b):  # image.c:rgb_to_hsv for one pixel
    mx, mn = max(r, g, b), min(r, g, b)
    delta = mx - mn
    if mx == 0:
        return 0.0, 0.0, mx
    s = delta / mx
    if delta == 0:
        return 0.0, s, mx  # the C divides 0 by 0 here; with s = 0 the hue is never used
    h = (g - b) / delta if r == mx else 2 + (b - r) / delta if g == mx else 4 + (r - g) / delta
    return (h + 6 if h < 0 else h) / 6.0, s, mx


def _rgb_pixel(h, s, v):  # image.c:hsv_to_rgb for one pixel
    h *= 6
    if s == 0:
        return v, v, v
    i = math.floor(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v)}.get(i, (v, p, q))


def test_hsv_round_trip_and_distort_equal_the_reference():
    im = np.random.default_rng(2).random((3, 5, 6)).astype(np.float32)
    im[:, 0, 0] = 0.5  # a grey pixel
    im[:, 1, 1] = 0.0  # black
    hsv = rgb_to_hsv(im)
    ref = np.array([[_hsv_pixel(*im[:, y, x]) for x in range(6)] for y in range(5)]).transpose(2, 0, 1)
    assert np.abs(hsv - ref).max() < 1e-6
    assert np.abs(hsv_to_rgb(hsv) - im).max() < 1e-5
    dhue, dsat, dexp = 0.3, 1.4, 0.7
    out = distort(im, dhue, dsat, dexp)
    expect = np.zeros_like(im)
    for y in range(5):
        for x in range(6):
            h, s, v = _hsv_pixel(*im[:, y, x])
            s, v, h = s * dsat, v * dexp, h + dhue
            h = h - 1 if h > 1 else h + 1 if h < 0 else h
            expect[:, y, x] = np.clip(_rgb_pixel(h, s, v), 0, 1)
    assert np.abs(out - expect).max() < 1e-5


def test_labels_come_from_the_path_as_fill_truth_smooth():
    labels = ["cat", "dog", "bird"]
    t, n = fill_truth("data/train/dog_0001.jpg", labels, 0.1)
    assert n == 1 and np.allclose(t, [0.05, 0.9, 0.05])
    t, n = fill_truth("data/dogcat/x.jpg", labels)
    assert n == 2 and t.tolist() == [1, 1, 0]  # "Too many labels": both set, as the reference does
    assert fill_truth("data/fish.jpg", labels)[1] == 0


SOFTMAX_COST = """[net]
batch=2
width=4
height=4
channels=3
[convolutional]
filters=5
size=4
stride=1
pad=0
activation=linear
[softmax]
groups=1
[cost]
type={kind}
scale={scale}
"""


@pytest.mark.parametrize("kind,scale", [("sse", 1.0), ("sse", 0.5), ("smooth", 2.0)])
def test_softmax_and_cost_gradient_is_minus_the_reference_delta(kind, scale):
    from darkcfg.train.losses import network_loss

    torch.manual_seed(0)
    model = Darknet(SOFTMAX_COST.format(kind=kind, scale=scale), "c.cfg").train()
    x = torch.rand(2, 3, 4, 4)
    truths = torch.tensor([[0, 0, 1, 0, 0], [0.05, 0.8, 0.05, 0.05, 0.05]])
    with torch.no_grad():
        logits = model.layers[0](x, []).reshape(2, -1)
    logits.requires_grad_(True)
    r = network_loss(model, x, truths)
    # the reference: softmax_x_ent_cpu, then l2_cpu / smooth_l1_cpu, backward_cost_layer's axpy with scale
    p = torch.softmax(logits.detach().double(), 1)
    t = truths.double()
    d_soft = t - p
    diff = t - p
    d_cost = diff if kind == "sse" else torch.where(diff.abs() < 1, diff, diff.sign())
    err = diff * diff if kind == "sse" else torch.where(diff.abs() < 1, diff * diff, 2 * diff.abs() - 1)
    delta = d_soft + scale * d_cost
    ce = float(torch.where(t != 0, -torch.log(p), torch.zeros_like(p)).sum())
    assert abs(r.cost - (ce + float(err.sum())) / 2) < 1e-4
    r.loss.backward()
    w = model.layers[0].conv.weight
    # dL/dW through the convolution equals the convolution's gradient for -delta at its output
    w2 = w.detach().clone().requires_grad_(True)
    out = torch.nn.functional.conv2d(x, w2, model.layers[0].conv.bias.detach()).reshape(2, -1)
    (-(delta.float()) * out).sum().backward()
    assert torch.allclose(w.grad, w2.grad, atol=1e-5)
