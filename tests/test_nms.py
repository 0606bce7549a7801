"""NMS against a slow, loop-for-loop reference written from DARKNET_SEMANTICS.md section 4 / box.c."""
import math

import numpy as np
import pytest

import darkcfg.infer.nms as nms_module
from darkcfg.infer.boxes import box_diou, box_iou
from darkcfg.infer.nms import nms_sort

f32 = np.float32


def _overlap(x1, w1, x2, w2):
    left = max(x1 - w1 / f32(2), x2 - w2 / f32(2))
    right = min(x1 + w1 / f32(2), x2 + w2 / f32(2))
    return right - left


def slow_iou(a, b):
    w = _overlap(a[0], a[2], b[0], b[2])
    h = _overlap(a[1], a[3], b[1], b[3])
    i = f32(0) if (w < 0 or h < 0) else w * h
    u = a[2] * a[3] + b[2] * b[3] - i
    if i == 0 or u == 0:
        return f32(0)
    return f32(i / u)


def slow_diou(a, b, beta):
    top = min(a[1] - a[3] / f32(2), b[1] - b[3] / f32(2))
    bot = max(a[1] + a[3] / f32(2), b[1] + b[3] / f32(2))
    left = min(a[0] - a[2] / f32(2), b[0] - b[2] / f32(2))
    right = max(a[0] + a[2] / f32(2), b[0] + b[2] / f32(2))
    w, h = right - left, bot - top
    c = w * w + h * h
    iou = slow_iou(a, b)
    if c == 0:
        return iou
    d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    return f32(iou - f32(math.pow(float(d / c), float(f32(beta)))))


def slow_nms(boxes, obj, probs, thresh, kind, beta):
    dets = [{"i": i, "box": [f32(v) for v in boxes[i]], "obj": obj[i], "prob": [f32(v) for v in probs[i]]}
            for i in range(len(boxes))]
    k = len(dets) - 1
    i = 0
    while i <= k:  # move objectness 0 to the end by swapping
        if dets[i]["obj"] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
            i -= 1
        i += 1
    total = k + 1
    for c in range(probs.shape[1]):
        dets[:total] = sorted(dets[:total], key=lambda d: -d["prob"][c])  # glibc qsort: stable merge sort
        for i in range(total):
            if dets[i]["prob"][c] == 0:
                continue
            for j in range(i + 1, total):
                a, b = dets[i]["box"], dets[j]["box"]
                if kind == "default":
                    crit = slow_iou(a, b)
                else:
                    crit = slow_diou(a, b, 0.6 if kind == "greedynms" else beta)
                if crit > f32(thresh):
                    dets[j]["prob"][c] = f32(0)
    return np.array([d["i"] for d in dets]), np.array([d["prob"] for d in dets], dtype=f32).reshape(probs.shape)


def _random_case(seed, n, classes=3):
    rng = np.random.default_rng(seed)
    centers = rng.random((n, 2)) * 0.6 + 0.2
    sizes = rng.random((n, 2)) * 0.3 + 0.05
    boxes = np.concatenate([centers, sizes], 1).astype(f32)
    boxes[rng.random(n) < 0.2] = boxes[0]  # duplicates
    obj = rng.random(n).astype(f32)
    obj[rng.random(n) < 0.1] = 0
    probs = (rng.random((n, classes)) * obj[:, None]).astype(f32)
    probs[rng.random((n, classes)) < 0.4] = 0
    probs[rng.random((n, classes)) < 0.1] = f32(0.5)  # equal scores
    return boxes, obj, probs


@pytest.mark.parametrize("pairwise_once", [1024, 0], ids=["pairwise-once", "per-class"])
@pytest.mark.parametrize("kind", ["default", "greedynms", "diounms"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_slow_reference(kind, seed, pairwise_once, monkeypatch):
    monkeypatch.setattr(nms_module, "_PAIRWISE_ONCE", pairwise_once)
    boxes, obj, probs = _random_case(seed, n=3 + seed * 3)
    for thresh in (0.3, 0.45, 0.6):
        order, p = nms_sort(boxes, obj, probs, thresh, kind, beta=0.3)
        ref_order, ref_p = slow_nms(boxes, obj, probs, thresh, kind, 0.3)
        np.testing.assert_array_equal(order, ref_order)
        np.testing.assert_array_equal(p, ref_p)


def test_pairwise_criteria_equal_the_loops():
    boxes, _, _ = _random_case(3, 25)
    iou, diou = box_iou(boxes, boxes), box_diou(boxes, boxes, 0.3)
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            assert iou[i, j] == slow_iou(boxes[i], boxes[j])
            assert diou[i, j] == slow_diou(boxes[i], boxes[j], 0.3)


def test_empty_and_single():
    order, p = nms_sort(np.zeros((0, 4), f32), np.zeros(0, f32), np.zeros((0, 80), f32), 0.45)
    assert order.shape == (0,) and p.shape == (0, 80)
    order, p = nms_sort(np.array([[.5, .5, .2, .2]], f32), np.array([.9], f32), np.array([[.9, 0]], f32), .45)
    assert order.tolist() == [0] and p.tolist() == [[f32(.9), 0]]


def test_iou_exactly_at_threshold_is_kept():
    # two 0.5x0.5 boxes overlapping by half their width: IoU = .125/.375 = 1/3 exactly in float32
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.75, 0.5, 0.5, 0.5]], f32)
    assert box_iou(boxes, boxes)[0, 1] == f32(1 / 3)
    obj = np.array([0.9, 0.8], f32)
    probs = np.array([[0.9], [0.8]], f32)
    _, kept = nms_sort(boxes, obj, probs, float(f32(1 / 3)))  # criterion must be strictly greater
    assert (kept[:, 0] > 0).all()
    _, cut = nms_sort(boxes, obj, probs, 0.33)
    assert cut[:, 0].tolist() == [f32(0.9), 0]


def test_equal_scores_keep_array_order():
    # equal scores: the stable sort keeps the earlier detection, which suppresses the later one
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2]], f32)
    obj = np.array([0.7, 0.7], f32)
    probs = np.array([[0.7], [0.7]], f32)
    order, p = nms_sort(boxes, obj, probs, 0.45)
    assert order.tolist() == [0, 1] and p[:, 0].tolist() == [f32(0.7), 0]
    order, p = nms_sort(boxes[::-1].copy(), obj, probs, 0.45)
    assert order.tolist() == [0, 1] and p[:, 0].tolist() == [f32(0.7), 0]


def test_zero_objectness_goes_to_the_end_by_swapping():
    boxes = np.tile(np.array([[0.5, 0.5, 0.1, 0.1]], f32), (4, 1)) + np.arange(4, dtype=f32)[:, None] * f32(0.2)
    obj = np.array([0, 0.5, 0.6, 0], f32)
    probs = np.zeros((4, 1), f32)
    order, _ = nms_sort(boxes, obj, probs, 0.45)
    assert order.tolist() == slow_nms(boxes, obj, probs, 0.45, "default", 0.6)[0].tolist() == [2, 1, 3, 0]


def test_the_three_kinds_differ():
    # IoU .5, iou - (d2/c2)^.6 = .355 (greedynms), iou - (d2/c2)^.3 = .119 (diounms, beta_nms .3)
    boxes = np.array([[0.4, 0.5, 0.6, 0.6], [0.6, 0.5, 0.6, 0.6]], f32)
    obj = np.array([0.9, 0.8], f32)
    probs = np.array([[0.9], [0.8]], f32)

    def second_kept(kind, thresh):
        return bool(nms_sort(boxes, obj, probs, thresh, kind, 0.3)[1][1, 0] > 0)

    assert [second_kept(k, 0.3) for k in ("default", "greedynms", "diounms")] == [False, False, True]
    assert [second_kept(k, 0.4) for k in ("default", "greedynms", "diounms")] == [False, True, True]


def test_every_kind_a_head_accepts_is_implemented():
    """One list: every nms_kind a [yolo] or [Gaussian_yolo] section may name runs here. cornersnms
    ([Gaussian_yolo] only) suppresses by box_iou > nms in diounms_sort (box.c; its box merging is commented
    out there), so on the same detections it keeps what `default` keeps."""
    from darkcfg.model.heads import NMS_KINDS

    rng = np.random.default_rng(3)
    boxes = np.concatenate([rng.uniform(0.2, 0.8, (40, 2)), rng.uniform(0.05, 0.4, (40, 2))], 1).astype(f32)
    obj = rng.uniform(0.3, 1, 40).astype(f32)
    probs = np.where(rng.random((40, 3)) < 0.5, rng.uniform(0.3, 1, (40, 3)), 0).astype(f32)
    for kind in NMS_KINDS:
        nms_sort(boxes, obj, probs, 0.45, kind, 0.6)
    corners, default = nms_sort(boxes, obj, probs, 0.45, "cornersnms"), nms_sort(boxes, obj, probs, 0.45)
    np.testing.assert_array_equal(corners[0], default[0])
    np.testing.assert_array_equal(corners[1], default[1])


def test_an_untrained_networks_infinite_boxes_warn_nothing():
    """`map` on an untrained network (sizes exp(large) = inf) printed bare numpy warnings: IoU and DIoU of
    infinite boxes are NaN, as in the reference's float arithmetic, silently."""
    import warnings

    from darkcfg.infer.boxes import box_diou, box_iou

    a = np.array([[0.5, 0.5, np.inf, np.inf], [0.2, 0.2, 0.1, 0.1]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iou, diou = box_iou(a, a), box_diou(a, a)
    assert np.isnan(iou[0, 0]) and iou[0, 1] == 0 and np.isnan(diou[0, 0]) and iou[1, 1] > 0.999
