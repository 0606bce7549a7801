"""decode() on heads no oracle covers: [Gaussian_yolo] against loops written from gaussian_yolo_layer.c,
and the letterbox correction against the geometry of letterbox_image."""
import math

import numpy as np
import torch

from darkcfg.infer.decode import correct_boxes, decode
from darkcfg.infer.preprocess import letterbox_size
from darkcfg.model.network import Darknet

GAUSSIAN_CFG = """[net]
width=64
height=48
channels=3
[convolutional]
filters={filters}
size=1
stride=16
activation=linear
[Gaussian_yolo]
mask=0,1
anchors=10,14, 23,27, 37,58
classes=3
num=3
yolo_point={point}
"""


def _gaussian_loops(out, anchors, mask, net_w, net_h, thresh, point):
    """get_gaussian_yolo_detections, loop for loop: cells outer, anchors inner, entries x sx y sy w sw h sh obj."""
    n, e, lh, lw = len(mask), 12, out.shape[1], out.shape[2]
    out = out.reshape(n, e, lh, lw)
    dets = []
    for i in range(lh * lw):
        row, col = divmod(i, lw)
        for a in range(n):
            v = out[a, :, row, col]
            obj = v[8]
            if not obj > thresh:
                continue
            bw = math.exp(v[4]) * anchors[2 * mask[a]] / net_w
            bh = math.exp(v[6]) * anchors[2 * mask[a] + 1] / net_h
            bx, by = (col + v[0]) / lw, (row + v[2]) / lh
            if point == "left_top":
                bx, by = bx + bw / 2, by + bh / 2
            elif point == "right_bottom":
                bx, by = bx - bw / 2, by - bh / 2
            uc = (v[1] + v[3] + v[5] + v[7]) / 4
            probs = [obj * v[9 + j] * (1 - uc) for j in range(3)]
            dets.append(([bx, by, bw, bh], obj, [p if p > thresh else 0 for p in probs]))
    return dets


def test_gaussian_yolo_matches_loops():
    for point in ("center", "left_top", "right_bottom"):
        model = Darknet(GAUSSIAN_CFG.format(filters=2 * 12, point=point), "<gauss>").eval()
        x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            outs = model(x)
        dets = decode(model, outs, [(64, 48), (64, 48)], 0.3, letterbox=False)
        for b in range(2):
            ref = _gaussian_loops(outs[0][b].numpy().astype(np.float64), [10, 14, 23, 27, 37, 58], [0, 1], 64, 48,
                                  0.3, point)
            assert len(dets[b]) == len(ref) > 0
            np.testing.assert_allclose(dets[b].boxes, [r[0] for r in ref], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(dets[b].objectness, [r[1] for r in ref], rtol=1e-6)
            np.testing.assert_allclose(dets[b].probs, [r[2] for r in ref], rtol=1e-5, atol=1e-6)


def test_gaussian_yolo_with_cornersnms_detects():
    """parse_gaussian_yolo accepts nms_kind=cornersnms; detection must then run (the reference's
    diounms_sort suppresses by box_iou for it), with what nms_kind=default gives."""
    cfg = GAUSSIAN_CFG.format(filters=2 * 12, point="center")
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    image = (x[0].sigmoid().numpy()).astype(np.float32)  # a Darknet image (3, H, W) in [0, 1]
    results = []
    for kind in ("cornersnms", "default"):
        model = Darknet(cfg + f"nms_kind={kind}\n", "<gauss>").eval()
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.uniform_(p, -1, 1)
        results.append(model.detect(image, thresh=0.05, names=["a", "b", "c"]))
    assert len(results[0]) > 1 and results[0] == results[1]


def test_letterbox_correction_inverts_the_embedding():
    # a box placed in the letterboxed input comes back at the same place of the original image
    for (w, h), (nw, nh) in [((768, 576), (416, 416)), ((500, 500), (512, 320)), ((300, 900), (320, 320))]:
        new_w, new_h = letterbox_size(w, h, nw, nh)
        dx, dy = (nw - new_w) / 2, (nh - new_h) / 2
        rel = np.array([[0.3, 0.6, 0.2, 0.1], [0.5, 0.5, 1.0, 1.0]], np.float32)  # relative to the image
        in_net = np.stack([(rel[:, 0] * new_w + dx) / nw, (rel[:, 1] * new_h + dy) / nh,
                           rel[:, 2] * new_w / nw, rel[:, 3] * new_h / nh], 1).astype(np.float32)
        np.testing.assert_allclose(correct_boxes(in_net, w, h, nw, nh, True), rel, atol=2e-6)
        np.testing.assert_array_equal(correct_boxes(in_net, w, h, nw, nh, False), in_net)


def test_candidate_selection_on_a_device_equals_the_host_one():
    """The torch selection (run where the heads live, i.e. on a GPU) picks the same rows in the same order
    as the numpy one the CPU uses and the reference tests check; here run on CPU tensors."""
    from darkcfg.infer.decode import _candidates_on_device, select_candidates

    rng = np.random.default_rng(0)
    out = torch.from_numpy(rng.random((3 * 8, 7, 5), dtype=np.float32))
    out[4::8] = torch.where(out[4::8] > 0.7, out[4::8], torch.tensor(0.7))  # some exactly at the threshold
    idx, rows = select_candidates(out.reshape(3, 8, 7, 5), 4, 0.7)
    d_idx, d_rows = _candidates_on_device(out.reshape(3, 8, 7, 5), 4, 0.7)
    assert 10 < len(idx) < 3 * 7 * 5 and (np.diff(idx) > 0).all()
    np.testing.assert_array_equal(idx, d_idx)
    np.testing.assert_array_equal(rows, d_rows)
    assert (rows[:, 4] > np.float32(0.7)).all()
    by_cell = out.reshape(3, 8, 7, 5).permute(2, 3, 0, 1).reshape(-1, 8).numpy()  # row = cell * n + anchor
    np.testing.assert_array_equal(rows, by_cell[idx])
    np.testing.assert_array_equal(idx, np.flatnonzero(by_cell[:, 4] > np.float32(0.7)))
