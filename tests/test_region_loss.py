"""[region] (YOLOv2) training loss against region_layer.c:forward_region_layer.

../shared holds no [region] delta from the C reference, so the reference's semantics are checked two ways:
values worked out by hand from the C formulas (delta_region_box, delta_region_class, the noobject and
thresh rules, the prior term before 12800 images), and a literal, loop-by-loop transcription of
forward_region_layer's three loops (every cell x anchor x truth, then every truth) on random inputs with
every option the reference has (bias_match, rescore, classfix -1/1/2, focal_loss, softmax, two truths on
one anchor, an out-of-range class id). The batched code must agree with both: those are the checks.
That its autograd gradient is -delta and its cost sum(delta^2) holds by construction (region_loss builds
the surrogate -sum(delta*x) and the cost from that delta); those asserts only guard the surrogate's wiring,
they say nothing about the reference. A short training run of yolov2-tiny.cfg must reduce the loss.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracle import SHARED

import darkcfg
from darkcfg.train.losses import network_loss
from darkcfg.train.losses.region import region_loss

ANCHORS = [1.0, 1.0, 0.8, 0.6, 2.5, 1.5]


def _layer(tmp_path, options: str = "", classes: int = 3, num: int = 3, size: int = 2):
    filters = num * (5 + classes)
    cfg = tmp_path / "r.cfg"
    cfg.write_text(f"[net]\nwidth={size * 32}\nheight={size * 32}\nchannels=3\nbatch=1\n"
                   f"[maxpool]\nsize=32\nstride=32\n"
                   f"[convolutional]\nfilters={filters}\nsize=1\nstride=1\nactivation=linear\n"
                   f"[region]\nanchors={','.join(map(str, ANCHORS[: 2 * num]))}\nclasses={classes}\ncoords=4\n"
                   f"num={num}\nsoftmax=1\n{options}\n")
    model = darkcfg.load(str(cfg))
    return model, model.layers[-1]


def _truths(rows: list[list[float]], batch: int = 1, t: int = 4) -> torch.Tensor:
    out = torch.zeros(batch, t, 6)
    for b, row in enumerate(rows):
        for k, r in enumerate(row):
            out[b, k, : len(r)] = torch.tensor(r)
    return out


def _entry(delta: torch.Tensor, n: int, e: int, j: int, i: int, classes: int = 3) -> float:
    return float(delta[0, n * (5 + classes) + e, j, i])


def test_hand_worked_single_truth(tmp_path) -> None:
    """x = 0 everywhere: logistic .5, softmax 1/3, predicted w, h = the anchors. One truth of class 1 at
    (0.3, 0.7) size (0.5, 0.3) on a 2x2 grid lies in cell (i=0, j=1); its shape matches anchor 1
    (0.8, 0.6 grid units = 0.4, 0.3) best."""
    _, layer = _layer(tmp_path, "object_scale=5\nnoobject_scale=1\ncoord_scale=2\nclass_scale=1.5\nthresh=.6")
    x = torch.zeros(1, 3 * 8, 2, 2, requires_grad=True)
    truths = _truths([[[0.3, 0.7, 0.5, 0.3, 1]]])
    r = region_loss(layer, x, truths, seen=20000)
    d = r.delta
    # delta_region_box, scale = coord_scale: (t - logistic(x)) * logistic'(.) for x, y; t - x for w, h
    assert _entry(d, 1, 0, 1, 0) == pytest.approx(2 * (0.3 * 2 - 0 - 0.5) * 0.25)
    assert _entry(d, 1, 1, 1, 0) == pytest.approx(2 * (0.7 * 2 - 1 - 0.5) * 0.25)
    assert _entry(d, 1, 2, 1, 0) == pytest.approx(2 * math.log(0.5 * 2 / 0.8), rel=1e-6)
    assert _entry(d, 1, 3, 1, 0) == pytest.approx(2 * math.log(0.3 * 2 / 0.6), abs=1e-6)
    # objectness towards 1 with object_scale through the logistic; classes one-hot - softmax, class_scale
    assert _entry(d, 1, 4, 1, 0) == pytest.approx(5 * (1 - 0.5) * 0.25)
    want = [1.5 * (-1 / 3), 1.5 * (2 / 3), 1.5 * (-1 / 3)]
    assert [_entry(d, 1, 5 + c, 1, 0) for c in range(3)] == pytest.approx(want)
    # every other anchor: objectness towards 0 with noobject_scale, nothing else (seen >= 12800)
    assert _entry(d, 0, 4, 0, 1) == pytest.approx(1 * (0 - 0.5) * 0.25)
    assert _entry(d, 2, 4, 1, 0) == pytest.approx(-0.125)
    others = d.clone()
    others[0, 8:16, 1, 0] = 0
    others.view(1, 3, 8, 2, 2)[:, :, 4] = 0
    assert float(others.abs().max()) == 0.0
    # by construction (the surrogate's wiring, not a check against the reference; see the module docstring)
    assert r.cost == pytest.approx(float((d * d).sum()), rel=1e-6)
    r.loss.backward()
    assert torch.equal(x.grad, -d)
    assert r.count == 1 and r.avg_obj == pytest.approx(0.5) and r.avg_cat == pytest.approx(1 / 3)


def test_thresh_rescore_prior_and_bias_match(tmp_path) -> None:
    """A predicted box overlapping a truth by more than thresh gets no objectness delta; rescore aims
    objectness at the IoU; before 12800 images idle boxes are pulled to their anchor with scale .01;
    bias_match picks the anchor by the anchor's shape, not the predicted one."""
    _, layer = _layer(tmp_path, "thresh=.5\nrescore=1\nbias_match=1", num=2)
    x = torch.zeros(1, 2 * 8, 2, 2)
    x[0, 2, 0, 1] = math.log(0.5 / 0.5)  # anchor 0 at cell (1, 0): w = 1 * 1 / 2 = .5
    truths = _truths([[[0.75, 0.25, 0.5, 0.5, 0]]])  # exactly anchor 0's box at cell (i=1, j=0)
    r = region_loss(layer, x, truths, seen=0)
    d = r.delta
    # the truth's anchor: rescore target = IoU of the predicted box (here 1) -> (1 - .5) * .25
    assert _entry(d, 0, 4, 0, 1) == pytest.approx(1 * (1 - 0.5) * 0.25)
    # anchor 1 (0.4 x 0.3) at that cell overlaps 0.48 <= .5: towards 0
    assert _entry(d, 1, 4, 0, 1) == pytest.approx(-0.125)
    # idle anchors: prior term .01 * (0.5 - .5) on x, y and .01 * (0 - 0) on w, h = 0; move x to see it
    x2 = x.clone()
    x2[0, 8 + 0, 1, 1] = 1.0  # anchor 1, cell (1, 1), raw x = 1
    x2[0, 8 + 2, 1, 1] = -0.5  # raw w = -.5
    d2 = region_loss(layer, x2, truths, seen=0).delta
    s = 1 / (1 + math.exp(-1.0))
    assert _entry(d2, 1, 0, 1, 1) == pytest.approx(0.01 * (0.5 - s) * s * (1 - s))
    assert _entry(d2, 1, 2, 1, 1) == pytest.approx(0.01 * (0 + 0.5))
    assert _entry(region_loss(layer, x2, truths, seen=12800).delta, 1, 0, 1, 1) == 0.0


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _iou(a, b) -> float:
    def ov(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w, h = ov(a[0], a[2], b[0], b[2]), ov(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0.0 if inter == 0 or union == 0 else inter / union


def _loop_reference(x: np.ndarray, truths: np.ndarray, o: dict, seen: int) -> tuple[np.ndarray, float]:
    """forward_region_layer transcribed loop by loop (flattened layout [b][j][i][n][entry])."""
    bsz, _, h, w = x.shape
    n, classes = o["num"], o["classes"]
    size = 5 + classes
    anchors = ANCHORS[: 2 * n]
    out = x.reshape(bsz, n, size, h, w).transpose(0, 3, 4, 1, 2).astype(np.float64).copy()
    out[..., 4] = 1 / (1 + np.exp(-out[..., 4]))
    e = np.exp(out[..., 5:] - out[..., 5:].max(-1, keepdims=True))
    out[..., 5:] = e / e.sum(-1, keepdims=True)
    delta = np.zeros_like(out)

    def region_box(b, j, i, k):
        v = out[b, j, i, k]
        return ((i + _sig(v[0])) / w, (j + _sig(v[1])) / h, math.exp(v[2]) * anchors[2 * k] / w,
                math.exp(v[3]) * anchors[2 * k + 1] / h)

    def delta_box(truth, b, j, i, k, scale):
        v, dv = out[b, j, i, k], delta[b, j, i, k]
        iou = _iou(region_box(b, j, i, k), truth)
        tx, ty = truth[0] * w - i, truth[1] * h - j
        tw, th = math.log(truth[2] * w / anchors[2 * k]), math.log(truth[3] * h / anchors[2 * k + 1])
        dv[0] = scale * (tx - _sig(v[0])) * _sig(v[0]) * (1 - _sig(v[0]))
        dv[1] = scale * (ty - _sig(v[1])) * _sig(v[1]) * (1 - _sig(v[1]))
        dv[2] = scale * (tw - v[2])
        dv[3] = scale * (th - v[3])
        return iou

    def delta_class(b, j, i, k, cls, scale):
        v, dv = out[b, j, i, k], delta[b, j, i, k]
        grad = 1.0
        if o["focal_loss"]:
            pt = v[5 + cls] + 1e-15
            grad = 0.5 * -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
        for c in range(classes):
            dv[5 + c] = scale * ((1 if c == cls else 0) - v[5 + c]) * grad

    def rows(b):
        for t in range(truths.shape[1]):
            yield truths[b, t]

    for b in range(bsz):
        for j in range(h):
            for i in range(w):
                for k in range(n):
                    pred = region_box(b, j, i, k)
                    best_iou, best_cls = 0.0, -1
                    for tr in rows(b):
                        if int(tr[4]) >= classes:
                            continue
                        if not tr[0]:
                            break
                        iou = _iou(pred, tr)
                        if iou > best_iou:
                            best_iou, best_cls = iou, int(tr[4])
                    s = out[b, j, i, k, 4]
                    delta[b, j, i, k, 4] = o["noobject_scale"] * (0 - s) * s * (1 - s)
                    if o["classfix"] == -1:
                        delta[b, j, i, k, 4] = o["noobject_scale"] * (best_iou - s) * s * (1 - s)
                    elif best_iou > o["thresh"]:
                        delta[b, j, i, k, 4] = 0
                        if o["classfix"] > 0:
                            delta_class(b, j, i, k, best_cls, o["class_scale"] * (s if o["classfix"] == 2 else 1))
                    if seen < 12800:
                        prior = ((i + .5) / w, (j + .5) / h, anchors[2 * k] / w, anchors[2 * k + 1] / h)
                        delta_box(prior, b, j, i, k, .01)
        for tr in rows(b):
            cls = int(tr[4])
            if cls >= classes:
                continue
            if not tr[0]:
                break
            i, j = int(tr[0] * w), int(tr[1] * h)
            best_iou, best_k = 0.0, 0
            for k in range(n):
                pw, ph = region_box(b, j, i, k)[2:]
                if o["bias_match"]:
                    pw, ph = anchors[2 * k] / w, anchors[2 * k + 1] / h
                iou = _iou((0, 0, pw, ph), (0, 0, tr[2], tr[3]))
                if iou > best_iou:
                    best_iou, best_k = iou, k
            iou = delta_box(tr, b, j, i, best_k, o["coord_scale"])
            s = out[b, j, i, best_k, 4]
            delta[b, j, i, best_k, 4] = o["object_scale"] * ((iou if o["rescore"] else 1) - s) * s * (1 - s)
            delta_class(b, j, i, best_k, cls, o["class_scale"])
    back = delta.transpose(0, 3, 4, 1, 2).reshape(x.shape)
    return back, float((back * back).sum())


OPTIONS = [
    dict(bias_match=1, rescore=0, classfix=0, focal_loss=0, seen=0),
    dict(bias_match=0, rescore=1, classfix=0, focal_loss=0, seen=20000),
    dict(bias_match=1, rescore=1, classfix=1, focal_loss=1, seen=0),
    dict(bias_match=0, rescore=0, classfix=2, focal_loss=0, seen=100),
    dict(bias_match=1, rescore=0, classfix=-1, focal_loss=0, seen=50000),
]


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_matches_loop_transcription(tmp_path, opt: dict) -> None:
    o = dict(num=3, classes=4, thresh=0.15, object_scale=5.0, noobject_scale=0.7, coord_scale=1.3, class_scale=0.9,
             **{k: v for k, v in opt.items() if k != "seen"})
    keys = "\n".join(f"{k}={v}" for k, v in o.items() if k not in ("num", "classes"))
    _, layer = _layer(tmp_path, keys, classes=4, num=3, size=4)
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 3 * 9, 4, 4, generator=g) * 1.5).requires_grad_(True)
    truths = torch.zeros(2, 6, 6)
    truths[0, :5, :5] = torch.tensor([
        [0.30, 0.40, 0.20, 0.30, 1], [0.31, 0.41, 0.22, 0.28, 3],  # same cell, same shape: overwrite
        [0.80, 0.10, 0.60, 0.15, 9],  # class id >= classes: skipped
        [0.55, 0.70, 0.45, 0.50, 2], [0.12, 0.90, 0.10, 0.12, 0]])
    truths[1, :2, :5] = torch.tensor([[0.50, 0.50, 0.90, 0.80, 1], [0.66, 0.21, 0.30, 0.25, 2]])
    r = region_loss(layer, x, truths, seen=opt["seen"])
    want, cost = _loop_reference(x.detach().numpy(), truths.numpy(), o, opt["seen"])
    scale = np.abs(want).max()
    assert np.abs(r.delta.numpy() - want).max() <= 1e-5 * scale
    assert r.cost == pytest.approx(cost, rel=1e-5)
    r.loss.backward()
    assert torch.equal(x.grad, -r.delta)  # by construction: guards the surrogate's wiring only


@pytest.mark.skipif(not (SHARED / "darknet" / "cfg" / "yolov2-tiny.cfg").exists(), reason="needs ../shared")
def test_yolov2_tiny_learns_one_batch() -> None:
    """network_loss on yolov2-tiny.cfg (the file unchanged, 64x64): 40 SGD steps on one batch with the
    reference's loss reduce its cost several-fold, so the [region] gradients point the right way."""
    torch.manual_seed(0)
    model = darkcfg.load(str(SHARED / "darknet" / "cfg" / "yolov2-tiny.cfg"), size=64)
    model.train()
    x = torch.rand(2, 3, 64, 64)
    truths = _truths([[[0.3, 0.4, 0.3, 0.5, 3]], [[0.7, 0.6, 0.5, 0.3, 11], [0.2, 0.2, 0.2, 0.2, 40]]], batch=2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    costs = []
    for _ in range(40):
        opt.zero_grad()
        r = network_loss(model, x, truths, seen=20000)
        (r.loss / 2).backward()
        opt.step()
        costs.append(r.cost)
    assert costs[-1] < 0.3 * costs[0], costs
    assert "Region Avg IOU" in r.heads[0][1].log_line()
