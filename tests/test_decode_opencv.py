"""Decoded boxes before NMS against OpenCV DNN's Darknet importer, an independent implementation.

OpenCV's [yolo]/[region] outputs are rows [cx, cy, w, h, obj, obj*cls_0, ...] relative to the network input,
cells row-major with anchors inner (the reference's order), class scores <= 0.2 set to 0. decode() with a
threshold below every value gives every row; with the image the size of the network input the box
correction is the identity. Random weights; the head convs' biases get a random shift so that class
scores fall on both sides of 0.2.
"""
import os
import tempfile

import numpy as np
import pytest
import torch
from oracle import CFG_DIR, needs_shared, randomize

from darkcfg.infer.decode import decode
from darkcfg.model.network import Darknet
from darkcfg.model.weights import save_weights

CASES = ["yolov4-tiny", "yolov4-csp", "yolov4-p5", "yolov3-tiny", "yolov4", "yolov2"]


def _model(name, size):
    model = Darknet.from_file(CFG_DIR / f"{name}.cfg", size=(size, size), warn_unused=False)
    randomize(model, 0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i in model.output_layers:
            conv = model.layers[i - 1]
            bias = conv.bn.bias if getattr(conv, "bn", None) is not None else conv.conv.bias
            bias.add_(torch.rand(bias.shape, generator=g) * 2 - 1)
            if model.layers[i].ltype == "region":  # softmax classes, make class 0 win
                e = model.layers[i].entries
                bias.view(-1, e)[:, 5] += 6
    return model.eval()


@needs_shared
@pytest.mark.parametrize("name", CASES)
def test_decode_equals_opencv(name):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV has no Darknet importer (needs opencv-python-headless<5)")
    size = 128
    model = _model(name, size)
    x = torch.rand(1, *model.input_shape, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as d:
        w = os.path.join(d, "x.weights")
        save_weights(model, w)
        net = cv2.dnn.readNetFromDarknet(str(CFG_DIR / f"{name}.cfg"), w)
    net.setInput(x.numpy())
    ref = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(net.getUnconnectedOutLayersNames())])
    with torch.no_grad():
        dets = decode(model, model(x), [(size, size)], -1.0, letterbox=False)[0]
    assert len(dets) == len(ref)
    # boxes: relative error, w and h grow with exp(tw)
    box_err = np.abs(dets.boxes - ref[:, :4]) / np.maximum(1.0, np.abs(ref[:, :4]))
    assert box_err.max() < 1e-4, box_err.max()  # measured 4e-6 .. 5e-5
    ref_cls, cls = ref[:, 5:], dets.probs
    above = ref_cls > 0
    assert above.any() and (~above).any()  # both sides of OpenCV's cut are exercised
    assert np.abs(cls[above] - ref_cls[above]).max() < 1e-5  # measured <= 2e-6
    if model.layers[model.output_layers[-1]].ltype == "yolo":
        assert cls[~above].max() <= 0.2 + 1e-5
        assert np.abs(dets.objectness - ref[:, 4]).max() < 1e-5  # measured <= 1.5e-6
    else:
        # OpenCV's [region] also cuts at its cfg thresh and runs an NMS of its own, so its zeros say nothing
        assert (dets.objectness == 1).all()  # get_region_detections sets objectness to 1
