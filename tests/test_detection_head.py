"""The YOLOv1 [detection] head: decode as get_detection_detections, the loss as forward_detection_layer, both
transcribed from detection_layer.c loop by loop; detect, map's decode and export through the heads interface."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darkcfg.model.network import Darknet
from darkcfg.train.losses import network_loss
from darkcfg.train.losses.detection import detection_loss

CFG = """[net]
width=32
height=32
channels=3
[convolutional]
filters=4
size=3
stride=2
pad=1
activation=leaky
[connected]
output={outputs}
activation=linear
[detection]
classes=3
coords=4
rescore={rescore}
side=3
num=2
softmax=1
sqrt={sqrt}
forced={forced}
object_scale=1.5
noobject_scale=.5
class_scale=1.2
coord_scale=5
"""
SIDE, N, C = 3, 2, 3


def build(rescore=1, sqrt=1, forced=0) -> Darknet:
    return Darknet(CFG.format(outputs=SIDE * SIDE * (5 * N + C), rescore=rescore, sqrt=sqrt, forced=forced), "v1.cfg")


def c_decode(out: np.ndarray, sqrt: bool, thresh: float):
    """get_detection_detections with w = h = 1 (relative boxes), loop by loop."""
    dets = []
    for i in range(SIDE * SIDE):
        row, col = i // SIDE, i % SIDE
        for n in range(N):
            p_index = SIDE * SIDE * C + i * N + n
            scale = out[p_index]
            box_index = SIDE * SIDE * (C + N) + (i * N + n) * 4
            x = (out[box_index + 0] + col) / SIDE
            y = (out[box_index + 1] + row) / SIDE
            w = out[box_index + 2] ** (2 if sqrt else 1)
            h = out[box_index + 3] ** (2 if sqrt else 1)
            probs = [scale * out[i * C + j] if scale * out[i * C + j] > thresh else 0.0 for j in range(C)]
            dets.append((x, y, w, h, scale, probs))
    return dets


@pytest.mark.parametrize("sqrt", [0, 1])
def test_decode_follows_get_detection_detections(sqrt):
    model = build(sqrt=sqrt).eval()
    torch.manual_seed(0)
    out = torch.rand(1, *model.layers[-1].out_shape)
    head = model.layers[-1]
    d = head.decode_grid(out, 32, 32, exact=True)  # (1, S, S, n): cell-major, anchor-minor
    expect = c_decode(out.flatten().numpy(), bool(sqrt), 0.0)
    got = list(zip(d.x.flatten(), d.y.flatten(), d.w.flatten(), d.h.flatten(), d.objectness.flatten(),
                   d.probs.reshape(-1, C)))
    assert len(got) == len(expect) == SIDE * SIDE * N
    for g, e in zip(got, expect):
        np.testing.assert_allclose([float(v) for v in g[:5]], e[:5], rtol=1e-6)
        np.testing.assert_allclose(g[5].numpy(), e[5], rtol=1e-6)


def test_detect_map_and_export_go_through_the_head(tmp_path):
    """detect returns the boxes the C decode gives (prob > thresh, after NMS), relative to the image; export's
    decoded scores are the same probabilities."""
    from darkcfg.export.graph import ExportModel
    from darkcfg.infer.decode import decode
    model = build(sqrt=1).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    dets = decode(model, out, [(64, 48)], 0.05, letterbox=True)[0]
    expect = c_decode(out[0].flatten().numpy(), True, 0.05)
    keep = [e for e in expect if e[4] > 0.05]
    assert len(dets.boxes) == len(keep)
    np.testing.assert_allclose(dets.boxes, np.array([e[:4] for e in keep], np.float32), rtol=1e-6)  # no letterbox
    with torch.no_grad():
        boxes, scores = ExportModel(model, with_decode=True)(x)
    expect_scores = [e[5] for e in c_decode(out[0].flatten().numpy(), True, -1e9)]  # prob before the threshold
    np.testing.assert_allclose(scores[0].numpy(), np.array(expect_scores), rtol=1e-5, atol=1e-7)
    assert boxes.shape == (1, SIDE * SIDE * N, 4)


def c_truth_grid(truths):
    """fill_truth_region with num_boxes = side (no shuffling): per cell is_obj, classes one-hot, x, y, w, h."""
    grid = np.zeros(SIDE * SIDE * (5 + C), np.float32)
    for x, y, w, h, cid in truths:
        cid = int(cid)
        if w < .001 or h < .001:
            continue
        col, row = int(x * SIDE), int(y * SIDE)
        x, y = x * SIDE - col, y * SIDE - row
        index = (col + row * SIDE) * (5 + C)
        if grid[index]:
            continue
        grid[index] = 1
        index += 1
        if cid < C:
            grid[index + cid] = 1
        index += C
        grid[index:index + 4] = [x, y, w, h]
    return grid


def box_iou(a, b):
    def overlap(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0 if w < 0 or h < 0 else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0 if inter == 0 or union == 0 else inter / union


def c_delta(out, truth, layer):
    """forward_detection_layer's delta for one image, loop by loop (random off)."""
    locations, delta = SIDE * SIDE, np.zeros_like(out)
    for i in range(locations):
        ti = i * (1 + 4 + C)
        for j in range(N):
            p = locations * C + i * N + j
            delta[p] = layer.noobject_scale * (0 - out[p])
        if not truth[ti]:
            continue
        ci = i * C
        for j in range(C):
            delta[ci + j] = layer.class_scale * (truth[ti + 1 + j] - out[ci + j])
        t = list(truth[ti + 1 + C: ti + 5 + C])
        t[0] /= SIDE
        t[1] /= SIDE
        best_index, best_iou, best_rmse = -1, 0, 20
        for j in range(N):
            bi = locations * (C + N) + (i * N + j) * 4
            o = list(out[bi:bi + 4])
            o[0] /= SIDE
            o[1] /= SIDE
            if layer.sqrt:
                o[2], o[3] = o[2] * o[2], o[3] * o[3]
            iou = box_iou(o, t)
            rmse = math.sqrt(sum((o[k] - t[k]) ** 2 for k in range(4)))
            if best_iou > 0 or iou > 0:
                if iou > best_iou:
                    best_iou, best_index = iou, j
            elif rmse < best_rmse:
                best_rmse, best_index = rmse, j
        if layer.forced:
            best_index = 1 if t[2] * t[3] < .1 else 0
        bi = locations * (C + N) + (i * N + best_index) * 4
        tb = ti + 1 + C
        o = list(out[bi:bi + 4])
        o[0] /= SIDE
        o[1] /= SIDE
        if layer.sqrt:
            o[2], o[3] = o[2] * o[2], o[3] * o[3]
        iou = box_iou(o, t)
        p = locations * C + i * N + best_index
        delta[p] = layer.object_scale * ((iou if layer.rescore else 1.0) - out[p])
        for k in range(4):
            delta[bi + k] = layer.coord_scale * (truth[tb + k] - out[bi + k])
        if layer.sqrt:
            delta[bi + 2] = layer.coord_scale * (math.sqrt(truth[tb + 2]) - out[bi + 2])
            delta[bi + 3] = layer.coord_scale * (math.sqrt(truth[tb + 3]) - out[bi + 3])
    return delta


@pytest.mark.parametrize("rescore,sqrt,forced", [(1, 1, 0), (0, 0, 0), (1, 1, 1)])
def test_loss_follows_forward_detection_layer(rescore, sqrt, forced):
    model = build(rescore, sqrt, forced)
    head = model.layers[-1]
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, *head.in_shape, generator=g) * 1.2 - 0.1).requires_grad_(True)
    truths = torch.zeros(2, 5, 6)
    truths[0, :3, :5] = torch.tensor([[0.2, 0.3, 0.3, 0.4, 1], [0.25, 0.35, 0.1, 0.1, 2],  # same cell: 1st wins
                                      [0.8, 0.7, 0.2, 0.5, 0]])
    truths[1, :2, :5] = torch.tensor([[0.5, 0.5, 0.6, 0.2, 2], [0.1, 0.9, 0.05, 0.0005, 1]])  # tiny: skipped
    result = detection_loss(head, x, truths, seen=10**6)
    with torch.no_grad():
        out = head(x, []).reshape(2, -1).numpy().astype(np.float64)
    expect = np.stack([c_delta(out[b], c_truth_grid(truths[b, :, :5][truths[b, :, 0] > 0].tolist()), head)
                       for b in range(2)])
    np.testing.assert_allclose(result.delta.reshape(2, -1).numpy(), expect, rtol=1e-5, atol=1e-6)
    assert math.isclose(result.cost, float((expect ** 2).sum()), rel_tol=1e-5)
    result.loss.backward()
    np.testing.assert_allclose(x.grad.reshape(2, -1).numpy(), -expect, rtol=1e-5, atol=1e-6)
    assert result.count == 4 and result.log_line().startswith("Detection Avg IOU: ")


def test_the_whole_network_trains_through_network_loss():
    model = build().train()
    truths = torch.zeros(1, 4, 6)
    truths[0, 0, :5] = torch.tensor([0.4, 0.6, 0.3, 0.3, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    costs = []
    x = torch.rand(1, 3, 32, 32)
    for _ in range(15):
        res = network_loss(model, x, truths)
        opt.zero_grad()
        res.loss.backward()
        opt.step()
        costs.append(res.cost)
    assert costs[-1] < 0.5 * costs[0]
