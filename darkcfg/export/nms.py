"""Darknet's per-class greedy NMS inside an exported graph (box.c:do_nms_sort without its ordering details:
a box survives for class c when its score > thresh and no higher-scoring box of c overlaps it by IoU > nms).

`greedy_nms` is a scripted function (TorchScript exports); `darkcfg::nms` wraps it as a custom op that the
ONNX exporter translates to the standard NonMaxSuppression operator (`nms_onnx`).
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.jit.script
def greedy_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    """Per-image, per-class greedy NMS. boxes (B, N, 4) x1y1x2y2, scores (B, C, N) -> (K, 3) int64 rows
    (batch, class, box index), each class's survivors in decreasing score, like ONNX NonMaxSuppression."""
    out = []
    for b in range(boxes.shape[0]):
        bx = boxes[b]
        area = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
        for c in range(scores.shape[1]):
            s = scores[b, c]
            cand = torch.nonzero(s > score_threshold).flatten()
            if cand.numel() == 0:
                continue
            order = cand[torch.argsort(s[cand], descending=True, stable=True)]
            cb = bx[order]
            lt = torch.maximum(cb[:, None, :2], cb[None, :, :2])
            rb = torch.minimum(cb[:, None, 2:], cb[None, :, 2:])
            wh = (rb - lt).clamp(min=0)
            inter = wh[..., 0] * wh[..., 1]
            a = area[order]
            iou = inter / (a[:, None] + a[None, :] - inter)
            keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
            for i in range(order.numel()):
                if bool(keep[i]):
                    later = torch.arange(order.numel(), device=boxes.device) > i
                    keep = keep & ~(later & (iou[i] > iou_threshold))
            k = order[keep]
            col = torch.full_like(k, b)
            out.append(torch.stack([col, torch.full_like(k, c), k], 1))
    if len(out) == 0:
        return torch.zeros((0, 3), dtype=torch.long, device=boxes.device)
    return torch.cat(out, 0)


@torch.library.custom_op("darkcfg::nms", mutates_args=())
def _nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    return greedy_nms(boxes, scores, iou_threshold, score_threshold)


@_nms_op.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    k = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((k, 3), dtype=torch.long)


def nms_onnx(boxes, scores, iou_threshold: float, score_threshold: float):  # noqa: ANN001, ANN201 (onnxscript values)
    from onnxscript import opset18 as op

    big = op.Constant(value_ints=[1 << 30])
    return op.NonMaxSuppression(boxes, scores, big, op.Constant(value_floats=[iou_threshold]),
                                op.Constant(value_floats=[score_threshold]), center_point_box=0)
