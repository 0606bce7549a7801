"""The [yolo] training loss against the reference's own deltas (reference/loss/*.npz).

For every [yolo] layer of yolov3-tiny (mse), yolov4-tiny (ciou, scale_x_y), yolov4-csp and yolov4-p5
(new_coords, objectness_smooth, iou_thresh, max_delta), on a batch of 2 with the stored truths, the
autograd gradient of `yolo_loss` with respect to the layer's input must equal minus darknet's delta to
1e-4 of the layer's largest |delta|, and its value must equal darknet's `l.cost`.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from oracle import REF, needs_shared

from darkcfg.model.network import Darknet
from darkcfg.train.losses.yolo import yolo_loss

CFGS = ["yolov3-tiny", "yolov4-tiny", "yolov4-csp", "yolov4-p5"]


@needs_shared
@pytest.mark.parametrize("name", CFGS)
def test_gradient_is_minus_reference_delta(name: str) -> None:
    d = np.load(REF / "loss" / f"{name}.npz")
    model = Darknet(str(d["cfg"]), name, warn_unused=False)
    size = int(d["net_size"])
    heads = sorted(int(k[len("yolo_in_"):]) for k in d.files if k.startswith("yolo_in_"))
    assert heads == [i for i, m in enumerate(model.layers) if m.ltype == "yolo"]
    for i in heads:
        x = torch.tensor(d[f"yolo_in_{i}"], requires_grad=True)
        r = yolo_loss(model.layers[i], x, torch.tensor(d["truths"]), size, size)
        r.loss.backward()
        ref = d[f"yolo_delta_{i}"]
        scale = np.abs(ref).max()
        err = np.abs(-x.grad.numpy() - ref).max() / scale
        assert err < 1e-4, f"{name} layer {i}: gradient differs from -delta by {err:.2e} of max |delta|"
        np.testing.assert_allclose(r.delta.numpy(), ref, rtol=0, atol=1e-4 * scale)
        cost = float(d[f"cost_{i}"])
        assert r.cost == pytest.approx(cost, rel=1e-5), f"{name} layer {i}: cost {r.cost} vs {cost}"
