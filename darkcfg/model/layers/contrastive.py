"""[contrastive] (softmax_layer.c:make_contrastive_layer): the contrastive-embedding loss layer of tracking cfgs
(yolov4-tiny_contrastive). It reads the embeddings of the [yolo] layer named by `yolo_layer`.

At inference it passes its input on, as the reference's GPU path does (its CPU path leaves the output unset).
Its loss (contrastive similarity between the embeddings of the same track) is not implemented: training a
cfg with it is refused in one line.
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Contrastive(DarknetLayer):
    ltype = "contrastive"
    untrainable = "the contrastive loss is not supported for training"

    def __init__(self, in_shape: Shape, classes: int, yolo_layer: int, embedding_size: int) -> None:
        super().__init__(in_shape, in_shape)
        self.classes, self.yolo_layer, self.embedding_size = classes, yolo_layer, embedding_size

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x

    def describe(self) -> str:
        return f"contrastive {self.in_shape.size:d} x {self.classes} (classes)"


@register("contrastive")
def build(sec: Section, ctx: BuildContext) -> Contrastive:
    classes = sec.int("classes", 1000)
    for key in ("temperature", "cls_normalizer", "max_delta"):
        sec.float(key, 1.0)
    sec.int("contrastive_neg_max", 3)
    ref = sec.int("yolo_layer", 0)
    idx = ctx.resolve("yolo_layer", [ref])[0] if ref else 0
    yolo = ctx.layers[idx] if ctx.layers else None
    if not ref or yolo is None or yolo.ltype != "yolo":
        opt = sec.find("yolo_layer")
        raise sec.error(f"yolo_layer={ref} must name a [yolo] layer (layer {idx} is "
                        f"[{yolo.ltype if yolo is not None else '?'}])", opt.line if opt else None)
    c, h, w = ctx.input
    n = yolo.n
    if ctx.input.size % (n * h * w):
        raise sec.error(f"the input has {ctx.input.size} values, not a whole number of embeddings for {n} anchors "
                        f"x {w}x{h} cells")
    size = ctx.input.size // (n * h * w)
    emb = getattr(yolo.params, "embedding_layer", None)
    if emb is not None:
        yolo_size = ctx.shapes[emb].c // n
        if yolo_size != size:
            raise sec.error(f"embedding size {size} differs from the [yolo] layer {idx}'s {yolo_size}: both must read "
                            "the same [convolutional] layer")
    return Contrastive(ctx.input, classes, idx, size)
