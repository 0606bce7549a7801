#!/usr/bin/env python3
"""Write darkcfg's own cfg/yolov2-tiny.cfg, cfg/yolov4-tiny.cfg, cfg/yolov4-csp.cfg and cfg/yolov4-p5.cfg.

The networks are the Scaled-YOLOv4 paper's (and Darknet's) architectures, composed here from blocks
(CSP stages, SPP-CSP, PAN with CSP blocks, YOLO heads) so that official .weights load into them: the same
layer sequence, types, shapes and tensor layout. Layer references are written as absolute indices.
Run: python scripts/write_cfgs.py [OUT_DIR]   (default: cfg/)
"""
from __future__ import annotations

import sys
from pathlib import Path


class CfgWriter:
    """Appends Darknet sections and returns each new layer's index."""

    def __init__(self, title: str, net: dict) -> None:
        self.parts = [f"# {title}\n# written by scripts/write_cfgs.py (darkcfg)\n", self._fmt("net", net)]
        self.n = 0

    @staticmethod
    def _fmt(name: str, opts: dict) -> str:
        body = "".join(f"{k}={v}\n" for k, v in opts.items())
        return f"\n[{name}]\n{body}"

    def add(self, name: str, comment: str = "", **opts: object) -> int:
        if comment:
            self.parts.append(f"\n# {comment}")
        self.parts.append(self._fmt(name, opts))
        self.n += 1
        return self.n - 1

    def conv(self, filters: int, size: int = 1, stride: int = 1, act: str = "mish", bn: bool = True,
             comment: str = "") -> int:
        opts: dict = {"batch_normalize": 1} if bn else {}
        opts.update(filters=filters, size=size, stride=stride, pad=1, activation=act)
        return self.add("convolutional", comment, **opts)

    def route(self, *layers: int, comment: str = "", **opts: object) -> int:
        return self.add("route", comment, layers=",".join(str(i) for i in layers), **opts)

    def shortcut(self, frm: int) -> int:
        return self.add("shortcut", **{"from": frm, "activation": "linear"})

    def maxpool(self, size: int, stride: int) -> int:
        return self.add("maxpool", size=size, stride=stride)

    def upsample(self) -> int:
        return self.add("upsample", stride=2)

    def region(self, opts: dict) -> int:
        return self.add("region", **opts)

    def yolo(self, mask: list[int], opts: dict) -> int:
        return self.add("yolo", mask=",".join(map(str, mask)), **opts)

    def text(self) -> str:
        return "".join(self.parts)


# -- CSPDarknet blocks ------------------------------------------------------------------------------
def csp_stage(w: CfgWriter, filters: int, hidden: int, blocks: int) -> int:
    """Downsample, split into two 1x1 branches, `blocks` residual units on one, concatenate, transition."""
    down = w.conv(filters, 3, 2, comment=f"CSP stage: {filters} filters, {blocks} residual blocks")
    part = w.conv(hidden)
    w.route(down)
    x = w.conv(hidden)
    for _ in range(blocks):
        w.conv(hidden)
        w.conv(hidden, 3)
        x = w.shortcut(x)
    last = w.conv(hidden)
    w.route(last, part)
    return w.conv(filters)


def csp_block(w: CfgWriter, filters: int, pairs: int) -> int:
    """Neck block: 1x1, split, `pairs` of (1x1, 3x3) on one branch, concatenate with the other, 1x1."""
    x = w.conv(filters)
    part = w.conv(filters)
    w.route(x)
    for _ in range(pairs):
        w.conv(filters)
        last = w.conv(filters, 3)
    w.route(last, part)
    return w.conv(filters)


def spp_csp(w: CfgWriter, filters: int, source: int) -> int:
    part = w.conv(filters, comment="SPP-CSP")
    w.route(source)
    w.conv(filters)
    w.conv(filters, 3)
    x = w.conv(filters)
    pools = []
    for size in (5, 9, 13):
        if pools:
            w.route(x)
        pools.append(w.maxpool(size, 1))
    w.route(pools[2], pools[1], pools[0], x)
    w.conv(filters)
    last = w.conv(filters, 3)
    w.route(last, part)
    return w.conv(filters)


def up_merge(w: CfgWriter, filters: int, lateral: int, pairs: int) -> int:
    """Top-down PAN step: reduce, upsample, concatenate with the reduced backbone feature, CSP block."""
    w.conv(filters, comment="PAN top-down")
    up = w.upsample()
    w.route(lateral)
    lat = w.conv(filters)
    w.route(lat, up)
    return csp_block(w, filters, pairs)


def down_merge(w: CfgWriter, src: int, filters: int, other: int, pairs: int) -> int:
    """Bottom-up PAN step: strided 3x3 from `src`, concatenate with `other`, CSP block."""
    if src != w.n - 1:
        w.route(src)
    down = w.conv(filters, 3, 2, comment="PAN bottom-up")
    w.route(down, other)
    return csp_block(w, filters, pairs)


def head(w: CfgWriter, src: int, filters: int, outputs: int, mask: list[int], yolo_opts: dict) -> int:
    if src != w.n - 1:
        w.route(src)
    w.conv(filters, 3, comment="detection head")
    w.conv(outputs, 1, act="logistic", bn=False)  # new_coords=1: the logistic is in the conv
    return w.yolo(mask, yolo_opts)


SCALED_NET = {"batch": 64, "subdivisions": 8, "width": 512, "height": 512, "channels": 3, "momentum": 0.949,
              "decay": 0.0005, "angle": 0, "saturation": 1.5, "exposure": 1.5, "hue": 0.1, "learning_rate": 0.001,
              "burn_in": 1000, "max_batches": 500500, "policy": "steps", "steps": "400000,450000",
              "scales": ".1,.1", "mosaic": 1, "letter_box": 1, "ema_alpha": 0.9998}


def scaled_yolo_opts(anchors: str, num: int, **extra: object) -> dict:
    opts = {"anchors": anchors, "classes": 80, "num": num, "jitter": 0.1, "scale_x_y": 2.0,
            "objectness_smooth": 1, "ignore_thresh": 0.7, "truth_thresh": 1, "resize": 1.5, "iou_thresh": 0.2,
            "iou_normalizer": 0.05, "cls_normalizer": 0.5, "obj_normalizer": 1.0, "iou_loss": "ciou",
            "nms_kind": "diounms", "beta_nms": 0.6, "new_coords": 1, "max_delta": 2}
    opts.update(extra)
    return opts


def csp_darknet_pan(w: CfgWriter, stages: list[tuple[int, int, int]], pairs: int) -> tuple[int, int, int]:
    """CSPDarknet stages, then SPP-CSP and the top-down PAN; returns (P3, P4, P5) layer indices."""
    outs = [csp_stage(w, *stage) for stage in stages]
    c3, c4, c5 = outs[-3:]
    p5 = spp_csp(w, 512, c5)
    p4 = up_merge(w, 256, c4, pairs)
    p3 = up_merge(w, 128, c3, pairs)
    return p3, p4, p5


def yolov4_csp() -> str:
    w = CfgWriter("YOLOv4-CSP (Scaled-YOLOv4), 512x512, 80 classes", SCALED_NET)
    w.conv(32, 3, comment="stem")
    x = w.conv(64, 3, 2)
    w.conv(32)
    w.conv(64, 3)
    w.shortcut(x)
    p3, p4, p5 = csp_darknet_pan(w, [(128, 64, 2), (256, 128, 8), (512, 256, 8), (1024, 512, 4)], pairs=2)
    anchors = "12,16,19,36,40,28,36,75,76,55,72,146,142,110,192,243,459,401"
    head(w, p3, 256, 255, [0, 1, 2], scaled_yolo_opts(anchors, 9, objectness_smooth=0, obj_normalizer=4.0,
                                                      max_delta=5))
    n4 = down_merge(w, p3, 256, p4, 2)
    head(w, n4, 512, 255, [3, 4, 5], scaled_yolo_opts(anchors, 9, max_delta=5))
    n5 = down_merge(w, n4, 512, p5, 2)
    head(w, n5, 1024, 255, [6, 7, 8], scaled_yolo_opts(anchors, 9, obj_normalizer=0.4))
    return w.text()


def yolov4_p5() -> str:
    w = CfgWriter("YOLOv4-P5 (Scaled-YOLOv4), 896x896, 80 classes", {**SCALED_NET, "width": 896, "height": 896})
    w.conv(32, 3, comment="stem")
    stages = [(64, 32, 1), (128, 64, 3), (256, 128, 15), (512, 256, 15), (1024, 512, 7)]
    p3, p4, p5 = csp_darknet_pan(w, stages, pairs=3)
    n4 = down_merge(w, p3, 256, p4, 3)
    n5 = down_merge(w, n4, 512, p5, 3)
    anchors = "13,17,31,25,24,51,61,45,48,102,119,96,97,189,217,184,171,384,324,451,616,618,800,800"
    for src, f, mask in ((p3, 256, [0, 1, 2, 3]), (n4, 512, [4, 5, 6, 7]), (n5, 1024, [8, 9, 10, 11])):
        head(w, src, f, 340, mask, scaled_yolo_opts(anchors, 12))
    return w.text()


def yolov4_tiny() -> str:
    net = {"batch": 64, "subdivisions": 1, "width": 416, "height": 416, "channels": 3, "momentum": 0.9,
           "decay": 0.0005, "angle": 0, "saturation": 1.5, "exposure": 1.5, "hue": 0.1, "learning_rate": 0.00261,
           "burn_in": 1000, "max_batches": 2000200, "policy": "steps", "steps": "1600000,1800000",
           "scales": ".1,.1"}
    w = CfgWriter("YOLOv4-tiny, 416x416, 80 classes", net)
    w.conv(32, 3, 2, act="leaky", comment="stem")
    w.conv(64, 3, 2, act="leaky")
    feats = []
    for f in (64, 128, 256):  # CSP-tiny blocks: the second half of the channels goes through two 3x3
        x = w.conv(f, 3, act="leaky", comment=f"CSP-tiny block, {f} filters")
        w.route(x, groups=2, group_id=1)
        a = w.conv(f // 2, 3, act="leaky")
        b = w.conv(f // 2, 3, act="leaky")
        w.route(b, a)
        t = w.conv(f, 1, act="leaky")
        feats.append(t)
        w.route(x, t)
        w.maxpool(2, 2)
    w.conv(512, 3, act="leaky")
    p5 = w.conv(256, 1, act="leaky")
    opts = {"anchors": "10,14,23,27,37,58,81,82,135,169,344,319", "classes": 80, "num": 6, "jitter": 0.3,
            "scale_x_y": 1.05, "cls_normalizer": 1.0, "iou_normalizer": 0.07, "iou_loss": "ciou",
            "ignore_thresh": 0.7, "truth_thresh": 1, "random": 0, "resize": 1.5, "nms_kind": "greedynms",
            "beta_nms": 0.6}
    w.conv(512, 3, act="leaky", comment="detection head, stride 32")
    w.conv(255, 1, act="linear", bn=False)
    w.yolo([3, 4, 5], opts)
    w.route(p5)
    w.conv(128, 1, act="leaky")
    up = w.upsample()
    w.route(up, feats[2])
    w.conv(256, 3, act="leaky", comment="detection head, stride 16")
    w.conv(255, 1, act="linear", bn=False)
    w.yolo([1, 2, 3], opts)
    return w.text()


def yolov2_tiny() -> str:
    """Tiny YOLOv2 (the YOLO9000 paper's small COCO model): a [region] head with 5 anchors in grid units."""
    net = {"batch": 1, "subdivisions": 1, "width": 416, "height": 416, "channels": 3, "momentum": 0.9,
           "decay": 0.0005, "angle": 0, "saturation": 1.5, "exposure": 1.5, "hue": 0.1, "learning_rate": 0.001,
           "burn_in": 1000, "max_batches": 500200, "policy": "steps", "steps": "400000,450000", "scales": ".1,.1"}
    w = CfgWriter("Tiny YOLOv2, 416x416, 80 classes ([region]); train with --batch 64 --subdivisions 2", net)
    for k, f in enumerate((16, 32, 64, 128, 256, 512)):
        w.conv(f, 3, act="leaky", comment="backbone" if k == 0 else "")
        w.maxpool(2, 2 if k < 5 else 1)
    w.conv(1024, 3, act="leaky")
    w.conv(512, 3, act="leaky", comment="detection head, stride 32")
    w.conv(425, 1, act="linear", bn=False)
    w.region({"anchors": "0.57273,0.677385,1.87446,2.06253,3.33843,5.47434,7.88282,3.52778,9.77052,9.16828",
              "bias_match": 1, "classes": 80, "coords": 4, "num": 5, "softmax": 1, "jitter": 0.2, "rescore": 0,
              "object_scale": 5, "noobject_scale": 1, "class_scale": 1, "coord_scale": 1, "absolute": 1,
              "thresh": 0.6, "random": 1})
    return w.text()


CFGS = {"yolov2-tiny": yolov2_tiny, "yolov4-tiny": yolov4_tiny, "yolov4-csp": yolov4_csp, "yolov4-p5": yolov4_p5}


def main(out: str = "cfg") -> None:
    for name, fn in CFGS.items():
        path = Path(out) / f"{name}.cfg"
        path.write_text(fn())
        print(path)


if __name__ == "__main__":
    main(*sys.argv[1:])
