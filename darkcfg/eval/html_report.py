"""The error-analysis page of `darkcfg map --report DIR`: DIR/index.html (no external resources) with its PNGs
beside it: the reference's printout first, unchanged; per class TP / FP / FN, AP and the F1-best threshold; AP
by object size; PR curves; the confusion matrix with background; and a gallery of the images with the most
errors, drawn with TP green, FP red and FN orange, each captioned with its file name and counts.

Every text that comes from the data (the printout, class names, file names) is HTML-escaped. Gallery pictures are
shown at their own pixel size (the <img> says it): an image larger than GALLERY_SIDE is shrunk to it, one smaller
than GALLERY_MIN is enlarged by the smallest integer factor reaching it (each pixel an exact k x k block), and the
boxes and labels are drawn after that, at the size shown, so they stay legible on small images (128 px -> 384).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from darkcfg.data.images import read_bgr
from darkcfg.eval.analysis import Analysis, ImageErrors
from darkcfg.eval.metrics import MapResult
from darkcfg.eval.plots import confusion_matrix, pr_curves, save_png
from darkcfg.files import write_text
from darkcfg.infer.draw import pixel_box

COLOURS = {"tp": (40, 170, 40), "fp": (40, 40, 230), "fn": (0, 150, 255)}  # BGR: green, red, orange
GALLERY_SIDE = 480  # longest side of a gallery picture: larger images are shrunk to it
GALLERY_MIN = 320  # smaller images are enlarged by an integer factor until their longest side reaches it

STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}
pre{background:#f6f6f6;padding:10px;overflow-x:auto}figure{display:inline-block;margin:6px;vertical-align:top}
figcaption{font-size:13px;word-break:break-all}.tp{color:#28aa28}.fp{color:#e62828}.fn{color:#ff9600}"""
# marks the page once every picture has loaded: data-images (count) and data-broken (those that did not)
CHECK = """window.addEventListener("load",function(){var im=document.images,b=0;for(var i=0;i<im.length;i++){
if(!im[i].complete||!im[i].naturalWidth){b++;}}document.body.setAttribute("data-images",im.length);
document.body.setAttribute("data-broken",b);});"""


def gallery_scale(width: int, height: int) -> float:
    """The factor a width x height image is shown at in the gallery: GALLERY_SIDE / longest side when larger, the
    smallest integer bringing the longest side to GALLERY_MIN or more when smaller, else 1."""
    side = max(width, height)
    if side > GALLERY_SIDE:
        return GALLERY_SIDE / side
    return float(-(-GALLERY_MIN // side))  # ceil: 1 at GALLERY_MIN and above


def draw_errors(e: ImageErrors, names: Sequence[str]) -> np.ndarray:
    """The image at its gallery size (`gallery_scale`) with its TPs green, FPs red and FNs orange, labelled."""
    img = read_bgr(e.path)
    s = gallery_scale(img.shape[1], img.shape[0])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    elif s > 1:  # whole pixel blocks: the picture as it is, only bigger
        k = int(s)
        img = cv2.resize(img, (img.shape[1] * k, img.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    h, w = img.shape[:2]
    items = [("fn", c, b, None) for c, b in e.fn] + [("fp", c, b, p) for c, b, p in e.fp] + \
        [("tp", c, b, p) for c, b, p in e.tp]
    for kind, c, b, p in items:
        place = pixel_box(b, w, h)
        if place is None:
            continue
        p1, p2 = place[:2], place[2:]
        colour = COLOURS[kind]
        cv2.rectangle(img, p1, p2, colour, 2)
        label = f"{kind.upper()} {names[c] if c < len(names) else c}" + (f" {p:.2f}" if p is not None else "")
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(p1[1], th + 3)
        cv2.rectangle(img, (p1[0], ty - th - 3), (p1[0] + tw + 2, ty), colour, -1)
        cv2.putText(img, label, (p1[0] + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    th = "".join(f'<th{" class=l" if k < left else ""}>{html.escape(str(h))}</th>' for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if k < left else ""}>{html.escape(str(v))}</td>'
                                    for k, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def write_report(out: Path, analysis: Analysis, result: MapResult, names: Sequence[str], printout: Sequence[str],
                 title: str, gallery: int = 12) -> Path:
    """Write DIR/index.html and its pictures; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pr_curves(result, list(names), out / "pr_curves.png")
    if result.confusion is not None:
        confusion_matrix(result.confusion, list(names), out / "confusion_matrix.png")
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>darknet detector map</h2>",
             f"<pre>{html.escape(chr(10).join(printout))}</pre>",
             f"<h2>Per class at thresh {analysis.thresh:g} (IoU &gt; {analysis.iou_thresh:g})</h2>"]
    shown = [c for c in analysis.classes if c.truths or c.tp or c.fp or c.best_f1]
    rows = [(c.class_id, c.name, c.truths, c.tp, c.fp, c.fn, f"{c.ap * 100:.2f}", f"{c.best_thresh:.3f}",
             f"{c.best_f1:.3f}", f"{c.best_precision:.3f}", f"{c.best_recall:.3f}") for c in shown]
    tot = (sum(c.truths for c in analysis.classes), sum(c.tp for c in analysis.classes),
           sum(c.fp for c in analysis.classes), sum(c.fn for c in analysis.classes))
    rows.append(("", "all", *tot, f"{result.map * 100:.2f}", "", "", "", ""))
    parts.append(_table(["id", "class", "truths", "TP", "FP", "FN", "AP %", "F1-best thresh", "F1", "precision",
                         "recall"], rows, left=2))
    if len(shown) < len(analysis.classes):
        parts.append(f"<p>{len(analysis.classes) - len(shown)} classes without truths or detections are not "
                     "listed (each AP 0, counted in the mean).</p>")
    parts.append(f"<h2>AP by object size at the network size (IoU {analysis.iou_thresh:g}, pycocotools)</h2>")
    parts.append(_table(["size", "area (px)", "truths", "AP %"],
                        [(s.name, {"small": "< 32²", "medium": "32²–96²", "large": "> 96²"}[s.name], s.truths,
                          f"{s.ap * 100:.2f}") for s in analysis.sizes]))
    parts.append("<h2>Precision-recall curves</h2><img src='pr_curves.png' alt='PR curves'>")
    if result.confusion is not None:
        parts.append("<h2>Confusion matrix (with background)</h2><img src='confusion_matrix.png' "
                     "alt='confusion matrix'>")
    worst = analysis.worst(gallery)
    parts.append(f"<h2>Images with the most errors ({len(worst)})</h2><p><span class=tp>TP green</span>, "
                 "<span class=fp>FP red</span>, <span class=fn>FN orange</span></p>")
    for k, e in enumerate(worst):
        name = f"gallery_{k:02d}.png"
        drawn = draw_errors(e, names)
        save_png(out / name, drawn)
        h, w = drawn.shape[:2]
        parts.append(f"<figure><img src='{name}' width={w} height={h} alt='{html.escape(Path(e.path).name)}'>"
                     f"<figcaption style='max-width:{max(w, 240)}px'>{html.escape(e.path)}: <span class=tp>TP "
                     f"{len(e.tp)}</span>, <span class=fp>FP {len(e.fp)}</span>, <span class=fn>FN {len(e.fn)}</span>"
                     "</figcaption></figure>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{CHECK}</script></head><body>{''.join(parts)}</body></html>\n")
    dest = out / "index.html"
    write_text(dest, page)
    return dest
