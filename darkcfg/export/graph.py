"""The exported graph: the inference fast path's network (batch-norm folded into the convolutions, float32)
and, by option:
- default: the heads' outputs exactly as `Darknet.forward` gives them (the reference's layout);
- `with_decode`: `boxes` (B, N, 4) x1, y1, x2, y2 in network-input pixels and `scores` (B, N, C) =
  Darknet's prob before its threshold (objectness x class probability; [Gaussian_yolo] also x (1 -
  uncertainty)), N = every cell and anchor of every head, in the reference's order, decoded by each head's
  own `decode` (darkcfg.model.heads);
- `with_nms`: also `detections` (K, 7) rows `batch, class, score, x1, y1, x2, y2` after Darknet's per-class
  greedy NMS (export/nms.py).
Boxes refer to the network input: undoing a resize or letterbox to the original image is the caller's (as
with OpenCV DNN).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darkcfg.export.nms import greedy_nms
from darkcfg.infer.fast import InferenceModel
from darkcfg.model.heads import DetectionHead, head_layers
from darkcfg.model.network import Darknet


class ExportModel(nn.Module):
    """The exported graph: network, then (options) decode and NMS. See the module docstring."""

    def __init__(self, model: Darknet, with_decode: bool = False, with_nms: bool = False, thresh: float = 0.25,
                 nms: float = 0.45) -> None:
        super().__init__()
        self.net = InferenceModel(model, channels_last=False).darknet
        self.with_decode, self.with_nms = with_decode or with_nms, with_nms
        self.thresh, self.nms = float(thresh), float(nms)
        self.heads: list[DetectionHead] = head_layers(self.net) if self.with_decode else []
        self.net_w, self.net_h = model.net.width, model.net.height

    def _decode(self, k: int, out: Tensor) -> tuple[Tensor, Tensor]:
        """Head k's output -> boxes (B, N_k, 4) x1y1x2y2 in input pixels, scores (B, N_k, C)."""
        d = self.heads[k].decode_grid(out, self.net_w, self.net_h)  # (B, H, W, n) each
        b = out.shape[0]
        boxes = torch.stack([(d.x - d.w / 2) * self.net_w, (d.y - d.h / 2) * self.net_h,
                             (d.x + d.w / 2) * self.net_w, (d.y + d.h / 2) * self.net_h], -1)
        return boxes.reshape(b, -1, 4), d.probs.reshape(b, boxes.shape[1] * boxes.shape[2] * boxes.shape[3], -1)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = self.net(x)
        if not self.with_decode:
            return tuple(outs)
        parts = [self._decode(k, o) for k, o in enumerate(outs)]
        boxes = torch.cat([p[0] for p in parts], 1)
        scores = torch.cat([p[1] for p in parts], 1)
        if not self.with_nms:
            return boxes, scores
        per_class = scores.transpose(1, 2)  # (B, C, N)
        if torch.jit.is_tracing():
            sel = greedy_nms(boxes, per_class, self.nms, self.thresh)
        else:
            sel = torch.ops.darkcfg.nms(boxes, per_class, self.nms, self.thresh)
        bi, ci, ni = sel[:, 0], sel[:, 1], sel[:, 2]
        score = per_class[bi, ci, ni]
        dets = torch.cat([bi[:, None].to(boxes.dtype), ci[:, None].to(boxes.dtype), score[:, None], boxes[bi, ni]], 1)
        return boxes, scores, dets
