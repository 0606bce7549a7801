"""AP and mAP on hand-built cases whose answers are worked out by hand (validate_detector_map's rules)."""
import numpy as np
import pytest

from darkcfg.eval.metrics import MapAccumulator, average_precision
from darkcfg.infer.detections import DetectionArray

f32 = np.float32


def dets(rows, classes=2):
    """rows: (class, prob, cx, cy, w, h) -> DetectionArray with one class per detection."""
    n = len(rows)
    probs = np.zeros((n, classes), f32)
    boxes = np.zeros((n, 4), f32)
    for k, (c, p, *b) in enumerate(rows):
        probs[k, c] = p
        boxes[k] = b
    return DetectionArray(boxes, np.ones(n, f32), probs, 100, 100)


def truths(rows):
    return np.asarray(rows, f32).reshape(-1, 5)


A = (0.3, 0.3, 0.2, 0.2)
B = (0.7, 0.7, 0.2, 0.2)


def score(images, points=0, classes=2, thresh=0.25):
    acc = MapAccumulator(classes, 0.5, thresh)
    for d, t, *dif in images:
        acc.add(d, t, dif[0] if dif else None)
    return acc.result(points)


@pytest.mark.parametrize("points", [0, 11, 101])
def test_perfect_detections_give_one(points):
    r = score([(dets([(0, .9, *A), (1, .8, *B)]), truths([(0, *A), (1, *B)]))], points)
    assert [c.ap for c in r.classes] == [1.0, 1.0] and r.map == 1.0 and (r.tp, r.fp) == (2, 0)


def test_one_class_ranked_tp_fp_tp():
    # ranks: TP (.9), FP (.8), TP (.7) with 2 truths -> P = 1, .5, .667; R = .5, .5, 1
    img = (dets([(0, .9, *A), (0, .8, .5, .5, .1, .1), (0, .7, *B)], 1), truths([(0, *A), (0, *B)]))
    r = score([img], 0, classes=1)
    assert r.classes[0].ap == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    r11 = score([img], 11, classes=1)  # recall points 0..0.5 -> 1, 0.6..1 -> 2/3
    assert r11.classes[0].ap == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)
    r101 = score([img], 101, classes=1)  # 0..0.5 (51 points) -> 1, the other 50 -> 2/3
    assert r101.classes[0].ap == pytest.approx((51 + 50 * (2 / 3)) / 101)


def test_duplicate_detection_is_a_false_positive():
    img = (dets([(0, .9, *A), (0, .8, *A)], 1), truths([(0, *A)]))
    r = score([img], 0, classes=1)
    assert (r.classes[0].tp, r.classes[0].fp) == (1, 1)
    assert r.classes[0].ap == 1.0  # the FP ranks after the only TP: recall 1 reached at precision 1


def test_claimed_truth_gives_no_second_chance():
    # detection 2 (centre .31) overlaps A and A2 (.32) equally: the first truth, A, wins the tie; A is
    # already claimed, so it is an FP although A2 is free (no fall-back to the second best)
    a2 = (0.32, 0.3, 0.2, 0.2)
    img = (dets([(0, .9, *A), (0, .8, 0.31, 0.3, 0.2, 0.2)], 1), truths([(0, *A), (0, *a2)]))
    r = score([img], 0, classes=1)
    assert (r.classes[0].tp, r.classes[0].fp) == (1, 1)
    img = (dets([(0, .9, 0.31, 0.3, 0.2, 0.2), (0, .8, 0.315, 0.3, 0.2, 0.2)], 1), truths([(0, *a2), (0, *A)]))
    r = score([img], 0, classes=1)  # both prefer A2: the second is an FP, A stays unmatched
    assert (r.classes[0].tp, r.classes[0].fp) == (1, 1) and r.classes[0].ap == pytest.approx(0.5)


def test_difficult_truth_drops_the_detection():
    img = (dets([(0, .9, *A), (0, .8, *B)], 1), truths([(0, *A)]), truths([(0, *B)]))
    r = score([img], 0, classes=1)
    assert r.detections == 1 and r.classes[0].ap == 1.0
    assert (r.classes[0].tp, r.classes[0].fp) == (1, 1)  # above thresh a dropped detection still counts FP


def test_class_without_truths_and_truth_without_detection():
    img = (dets([(0, .9, *A)]), truths([(0, *A), (1, *B)]))
    r = score([img], 0)
    assert [c.ap for c in r.classes] == [1.0, 0.0] and r.map == 0.5
    assert r.recall == pytest.approx(0.5) and r.truths == 2
    img = (dets([(1, .9, *A)]), truths([(0, *A)]))  # a class with detections but no truths scores 0
    assert [c.ap for c in score([img], 0).classes] == [0.0, 0.0]


def test_iou_threshold_is_strict_and_shift_costs_ap():
    # a 0.2 box shifted by d along x has IoU (0.2-d)/(0.2+d); d = 0.2/3 gives exactly 0.5 -> not a match
    for d, matched in [(0.06, True), (0.2 / 3 + 1e-4, False)]:
        img = (dets([(0, .9, 0.3 + d, 0.3, 0.2, 0.2)], 1), truths([(0, *A)]))
        assert score([img], 0, classes=1).classes[0].ap == (1.0 if matched else 0.0)


def test_iou_exactly_at_the_threshold_is_not_a_match():
    """IoU == 0.5 exactly in float32 (dyadic boxes: the truth 0.25..0.75 square, the detection its upper
    half): `> iou_thresh` is strict, so no match; a hair larger box matches."""
    from darkcfg.infer.boxes import box_iou

    t = (0, 0.5, 0.5, 0.5, 0.5)
    half = (0.5, 0.375, 0.5, 0.25)
    assert box_iou(np.array([half], f32), np.array([t[1:]], f32))[0, 0] == f32(0.5)
    assert score([(dets([(0, .9, *half)], 1), truths([t]))], 0, classes=1).classes[0].ap == 0.0
    bigger = (0.5, 0.37890625, 0.5, 0.2578125)  # also dyadic: IoU just above 0.5
    assert box_iou(np.array([bigger], f32), np.array([t[1:]], f32))[0, 0] > f32(0.5)
    assert score([(dets([(0, .9, *bigger)], 1), truths([t]))], 0, classes=1).classes[0].ap == 1.0


def test_empty_inputs():
    r = score([(DetectionArray.empty(2, 10, 10), truths([]))])
    assert r.map == 0 and r.detections == 0 and r.truths == 0
    assert average_precision([], [], 0) == 0.0
    with pytest.raises(ValueError, match="label class id 5"):
        score([(DetectionArray.empty(2, 10, 10), truths([(5, *A)]))])


@pytest.mark.parametrize("points", [0, 11, 101])
def test_shifted_boxes_lose_ap_where_the_iou_says(points):
    # detections equal to the truths shifted right by s*w: IoU = (1 - s) / (1 + s); s = .25 -> 0.6
    rng = np.random.default_rng(1)
    t = np.column_stack([rng.integers(0, 2, 20), rng.uniform(.2, .8, (20, 2)), rng.uniform(.05, .1, (20, 2))])
    rows = [(int(c), 0.5 + 0.02 * k, x + 0.25 * w, y, w, h) for k, (c, x, y, w, h) in enumerate(t)]
    for iou_thresh, expect in [(0.59, 1.0), (0.61, 0.0)]:
        acc = MapAccumulator(2, iou_thresh)
        for k in range(0, 20, 5):  # four images of five boxes
            acc.add(dets(rows[k:k + 5]), truths(t[k:k + 5]))
        assert acc.result(points).map == pytest.approx(expect)


def test_confusion_matrix_at_thresh():
    # truth A class 0 found as class 1, truth B class 1 missed, one detection on nothing (class 0),
    # and one low-confidence detection (below thresh: not counted)
    img = (dets([(1, .9, *A), (0, .8, .5, .9, .05, .05), (0, .1, *B)]), truths([(0, *A), (1, *B)]))
    m = score([img]).confusion
    assert m.tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
