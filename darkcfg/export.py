"""`darkcfg export`: a Darknet network as an ONNX or TorchScript file that runs without darkcfg.

The exported graph is the inference fast path's network (batch-norm folded into the convolutions, float32)
and returns, by option:
- default: the heads' outputs exactly as `Darknet.forward` gives them (the reference's layout);
- `with_decode`: `boxes` (B, N, 4) x1, y1, x2, y2 in network-input pixels and `scores` (B, N, C) =
  objectness x class probability (Darknet's prob before its threshold), N = every cell and anchor of every
  head, decoded as decode.py does (scale_x_y and new_coords included; [region] anchors in grid units);
- `with_nms`: also Darknet's per-class greedy NMS (do_nms_sort: a box survives for class c when its
  score > thresh and no higher-scoring box of c overlaps it by IoU > nms) as `detections` (K, 7) rows
  `batch, class, score, x1, y1, x2, y2`. In ONNX it is the standard NonMaxSuppression operator; in
  TorchScript a scripted function.
With `dynamic_batch` the batch size is free. Boxes refer to the network input: undoing a resize or
letterbox to the original image is the caller's (as with OpenCV DNN).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn

from darkcfg.decode import head_layers
from darkcfg.fast import InferenceModel
from darkcfg.layers.region import Region
from darkcfg.network import Darknet
from darkcfg.weights import atomic_write

FORMATS = ("onnx", "torchscript")


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


def _nms_onnx(boxes, scores, iou_threshold: float, score_threshold: float):  # noqa: ANN001, ANN202
    from onnxscript import opset18 as op

    big = op.Constant(value_ints=[1 << 30])
    return op.NonMaxSuppression(boxes, scores, big, op.Constant(value_floats=[iou_threshold]),
                                op.Constant(value_floats=[score_threshold]), center_point_box=0)


class ExportModel(nn.Module):
    """The exported graph: network, then (options) decode and NMS. See the module docstring."""

    def __init__(self, model: Darknet, with_decode: bool = False, with_nms: bool = False, thresh: float = 0.25,
                 nms: float = 0.45) -> None:
        super().__init__()
        self.net = InferenceModel(model, channels_last=False).darknet
        self.with_decode, self.with_nms = with_decode or with_nms, with_nms
        self.thresh, self.nms = float(thresh), float(nms)
        heads = head_layers(self.net) if self.with_decode else []
        if any(getattr(h, "gaussian", False) for h in heads):
            raise ValueError(f"{model.cfg_file}: --with-decode does not support [Gaussian_yolo] heads")
        self.net_w, self.net_h = model.net.width, model.net.height
        self.kinds: list[str] = []
        for k, h in enumerate(heads):
            region = isinstance(h, Region)
            self.kinds.append("region" if region else ("yolo_new" if h.params.new_coords else "yolo"))
            if region:
                anchors = torch.tensor(h.params.anchors, dtype=torch.float32).view(-1, 2)
            else:
                anchors = h.anchors
            self.register_buffer(f"anchors{k}", anchors.clone(), persistent=False)

    def _decode(self, k: int, out: Tensor) -> tuple[Tensor, Tensor]:
        kind = self.kinds[k]
        anchors = getattr(self, f"anchors{k}")
        n = anchors.shape[0]
        if kind == "region":  # (B, H, W, n*E) with x, y, w, h raw
            b, h, w, _ = out.shape
            y = out.reshape(b, h, w, n, -1)
            x0, y0 = torch.sigmoid(y[..., 0]), torch.sigmoid(y[..., 1])
            aw, ah = anchors[:, 0] / w, anchors[:, 1] / h
        else:
            b, _, h, w = out.shape
            y = out.reshape(b, n, -1, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, n, E)
            x0, y0 = y[..., 0], y[..., 1]
            aw, ah = anchors[:, 0] / self.net_w, anchors[:, 1] / self.net_h
        gx = torch.arange(w, dtype=out.dtype, device=out.device).view(1, 1, w, 1)
        gy = torch.arange(h, dtype=out.dtype, device=out.device).view(1, h, 1, 1)
        cx, cy = (gx + x0) / w, (gy + y0) / h
        if kind == "yolo_new":
            bw, bh = y[..., 2] * y[..., 2] * 4 * aw, y[..., 3] * y[..., 3] * 4 * ah
        else:
            bw, bh = torch.exp(y[..., 2]) * aw, torch.exp(y[..., 3]) * ah
        boxes = torch.stack([(cx - bw / 2) * self.net_w, (cy - bh / 2) * self.net_h,
                             (cx + bw / 2) * self.net_w, (cy + bh / 2) * self.net_h], -1)
        scores = y[..., 4:5] * y[..., 5:]
        return boxes.reshape(b, -1, 4), scores.reshape(b, boxes.shape[1] * boxes.shape[2] * n, -1)

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


def output_names(m: ExportModel, heads: int) -> list[str]:
    if m.with_nms:
        return ["boxes", "scores", "detections"]
    if m.with_decode:
        return ["boxes", "scores"]
    return [f"head{k}" for k in range(heads)]


def export(model: Darknet, path: Union[str, Path], fmt: str = "onnx", dynamic_batch: bool = False,
           with_decode: bool = False, with_nms: bool = False, thresh: float = 0.25, nms: float = 0.45,
           batch: int = 1) -> Path:
    """Write `model` (on the CPU, float32) to `path` as ONNX or TorchScript; returns the path.

    The input is `images` (batch, channels, height, width) at the cfg's size, RGB in [0, 1] as darkcfg's
    pre-processing gives it. The file is written atomically.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    m = ExportModel(model.cpu().float(), with_decode, with_nms, thresh, nms).eval()
    x = torch.rand(max(batch, 2 if dynamic_batch else 1), model.net.channels, model.net.height, model.net.width)
    path = Path(path)
    names = output_names(m, len(model.output_layers))
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks: the shapes are fixed by the cfg
            traced = torch.jit.trace(m, (x,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        atomic_write(path, lambda fh: torch.jit.save(traced, fh))
        return path
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): "
                           "pip install 'darkcfg[export]'") from None
    dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    table = {torch.ops.darkcfg.nms.default: _nms_onnx}
    # the exporter and its optimiser chat on stdout and in warnings: keep the CLI's output to its own lines
    chatter = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            prog = torch.onnx.export(m, (x,), dynamo=True, input_names=["images"], output_names=names,
                                     dynamic_shapes=dyn, custom_translation_table=table, verbose=False)
        finally:
            logging.disable(logging.NOTSET)
    atomic_write(path, lambda fh: fh.write(prog.model_proto.SerializeToString()))
    return path
