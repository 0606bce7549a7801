"""Annotated images: labels of boxes at the image's top edge do not cover each other."""
import numpy as np

from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.draw import _label_row, draw_detections


def test_labels_at_the_top_edge_take_separate_rows():
    taken = []
    for _ in range(3):  # three boxes at the top edge whose labels would sit at the same place
        y = _label_row(0, 80, 12, 2, 100, 10, 50, taken)
        taken.append((10, y, 60, y + 12))
    ys = [t[1] for t in taken]
    assert len(set(ys)) == 3 and all(0 <= y <= 100 - 12 for y in ys)
    assert all(abs(a - b) >= 12 for k, a in enumerate(ys) for b in ys[k + 1:])


def test_two_boxes_at_the_top_edge_draw_two_readable_labels():
    probs = np.zeros((2, 2), np.float32)
    probs[0, 0], probs[1, 1] = 0.9, 0.8
    dets = DetectionArray(np.array([[0.3, 0.2, 0.4, 0.4], [0.35, 0.2, 0.4, 0.4]], np.float32),
                          np.ones(2, np.float32), probs, 200, 100, names=["aaaaaaaa", "bbbbbbbb"])
    out = draw_detections(np.full((100, 200, 3), 255, np.uint8), dets, 0.25)
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    assert len(colours) > 3  # boxes, two label fills and text were drawn
    # the two label fills (class colours) both remain visible: neither label is painted over by the other
    from darkcfg.infer.draw import class_color

    for k in range(2):
        assert (out == np.array(class_color(k, 2), np.uint8)).all(axis=2).sum() > 200


def test_an_untrained_networks_infinite_and_nan_boxes_are_clipped_or_skipped():
    """draw_detections_v3 clips boxes to the image: infinite sizes (an untrained network's exp) draw to the edges
    instead of raising OverflowError; a NaN box is skipped."""
    probs = np.zeros((2, 1), np.float32)
    probs[:, 0] = 0.9
    dets = DetectionArray(np.array([[0.5, 0.5, np.inf, np.inf], [np.nan, 0.5, 0.1, 0.1]], np.float32),
                          np.ones(2, np.float32), probs, 64, 48, names=["x"])
    out = draw_detections(np.full((48, 64, 3), 255, np.uint8), dets, 0.25)
    assert out.shape == (48, 64, 3) and (out != 255).any()
