"""`darkcfg export`: TorchScript and ONNX files (run by torch.jit and ONNX Runtime) give darkcfg's outputs.

With the real yolov3-tiny weights on dog.jpg and giraffe.jpg (resized, not letterboxed, at 416): the raw
heads match the network's, and the exported decode + NMS give the same detections, class for class and
box for box, as darkcfg's detection pipeline (whose output equals the reference's `detector test`, see
test_detect_reference). The ONNX part skips when onnx/onnxruntime are not installed (CI installs them).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from oracle import REPO, SHARED, needs_shared

import darkcfg
from darkcfg.data.images import load_image
from darkcfg.export import export
from darkcfg.infer.detector import Detector

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime/onnxscript not installed (pip install "
                                "'darkcfg[export]')")
FORMATS = ["torchscript", pytest.param("onnx", marks=needs_onnx)]


@pytest.fixture(scope="module")
def model() -> darkcfg.Darknet:
    return darkcfg.load(str(REPO / "cfg" / "yolov3-tiny.cfg"), str(REPO / "weights" / "yolov3-tiny.weights"))


@pytest.fixture(scope="module")
def inputs(model) -> np.ndarray:
    det = Detector(model, letterbox=False)
    return np.stack([det.prepare(load_image(str(SHARED / "images" / f"{n}.jpg"))) for n in ("dog", "giraffe")])


def _run(path, fmt: str, x: np.ndarray) -> list[np.ndarray]:
    if fmt == "torchscript":
        with torch.no_grad():
            return [o.numpy() for o in torch.jit.load(str(path))(torch.from_numpy(x))]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _pipeline_rows(model, x: np.ndarray, thresh: float) -> list[set]:
    """darkcfg's detections in network-input pixels: per image {(class, score, x1, y1, x2, y2)} rounded."""
    det = Detector(model, thresh=thresh, nms=0.45, letterbox=False)
    out = []
    for d in det.run_batch(list(x), [(416, 416)] * len(x)):
        rows = set()
        for i, c in zip(*np.nonzero(d.probs > thresh)):
            cx, cy, w, h = d.boxes[i] * 416
            rows.add((int(c), round(float(d.probs[i, c]), 3), *(round(float(v), 1) for v in
                                                                  (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))))
        out.append(rows)
    return out


@needs_shared
@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_heads(model, inputs, tmp_path, fmt: str) -> None:
    path = export(model, tmp_path / f"m.{fmt}", fmt, batch=2)
    got = _run(path, fmt, inputs)
    with torch.no_grad():
        want = model(torch.from_numpy(inputs))
    assert len(got) == 2
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape)
        assert np.abs(g - w.numpy()).max() <= 1e-4 * np.abs(w.numpy()).max()


@needs_shared
@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_and_nms_equal_the_pipeline(model, inputs, tmp_path, fmt: str) -> None:
    path = export(model, tmp_path / f"m.{fmt}", fmt, dynamic_batch=True, with_nms=True, thresh=0.25)
    want = _pipeline_rows(model, inputs, 0.25)
    for batch in (inputs[:1], inputs):  # dynamic batch: 1 and 2
        boxes, scores, dets = _run(path, fmt, batch)
        assert boxes.shape == (len(batch), 2535, 4) and scores.shape == (len(batch), 2535, 80)
        got = [set() for _ in batch]
        for b, c, s, *xyxy in dets.tolist():
            got[int(b)].add((int(c), round(s, 3), *(round(v, 1) for v in xyxy)))
        for g, w in zip(got, want):
            assert len(w) >= 2
            assert _close_sets(g, w), (sorted(g), sorted(w))


def _close_sets(a: set, b: set) -> bool:
    """Equal up to float noise: same classes, scores within 2e-3, boxes within 0.3 px."""
    if len(a) != len(b):
        return False
    rest = sorted(b)
    for r in sorted(a):
        m = [q for q in rest if q[0] == r[0] and abs(q[1] - r[1]) <= 2e-3 and
             all(abs(u - v) <= 0.3 for u, v in zip(q[2:], r[2:]))]
        if not m:
            return False
        rest.remove(m[0])
    return True


@needs_onnx
def test_cli_export_onnx(tmp_path) -> None:
    out = tmp_path / "y.onnx"
    r = subprocess.run([sys.executable, "-m", "darkcfg", "export", "cfg/yolov3-tiny.cfg", "--size", "320",
                        "--with-decode", "-o", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("(onnx, input images 1x3x320x320)") and r.stderr == ""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores"]


def test_cli_export_bad_format(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "darkcfg", "export", "cfg/yolov3-tiny.cfg", "-f", "tflite"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "tflite" in r.stderr


def test_gaussian_yolo_decode_equals_the_detection_decode(tmp_path) -> None:
    """Export decodes through each head's own `decode`, so [Gaussian_yolo] (x, y at entries 0 and 2, scores
    obj*cls*(1 - mean uncertainty)) exports too; its scores above thresh and their boxes are those of
    darkcfg's detection decode (without NMS), which test_decode checks against gaussian_yolo_layer.c loops."""
    from darkcfg.infer.decode import decode

    cfg = ("[net]\nwidth=64\nheight=48\nchannels=3\n[convolutional]\nfilters=24\nsize=1\nstride=16\n"
           "activation=linear\n[Gaussian_yolo]\nmask=0,1\nanchors=10,14, 23,27, 37,58\nclasses=3\nnum=3\n")
    model = darkcfg.Darknet(cfg, "<gauss>").eval()
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    export(model, tmp_path / "g.pt", "torchscript", with_decode=True)
    boxes, scores = _run(tmp_path / "g.pt", "torchscript", x.numpy())
    with torch.no_grad():
        d = decode(model, model(x), [(64, 48)], 0.1, letterbox=False)[0]
    want = {(int(c), round(float(d.probs[i, c]), 5)) for i, c in zip(*np.nonzero(d.probs))}
    got = {(int(c), round(float(scores[0, i, c]), 5)) for i, c in zip(*np.nonzero(scores[0] > 0.1))}
    assert len(want) > 3 and got == want
    cx, cy, w, h = (d.boxes[:, k] for k in range(4))
    pixels = np.stack([(cx - w / 2) * 64, (cy - h / 2) * 48, (cx + w / 2) * 64, (cy + h / 2) * 48], 1)
    sel = boxes[0][(scores[0] > 0.1).any(1)]
    matched = [np.abs(sel - p).max(1).min() < 1e-3 for p in pixels[(d.probs > 0).any(1)]]
    assert all(matched)
