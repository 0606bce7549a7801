"""Pictures of an evaluation: precision-recall curves and a confusion matrix, drawn with OpenCV (no
plotting library needed), written atomically as PNG. `axes` and `save_png` also draw the training chart."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from darkcfg.eval.metrics import MapResult
from darkcfg.files import write_bytes
from darkcfg.infer.draw import class_color


def save_png(path: Path, img: np.ndarray) -> None:
    """img (H, W, 3) uint8 BGR as a PNG file, atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the plot")
    write_bytes(path, buf.tobytes())


def axes(img: np.ndarray, box: tuple[int, int, int, int], xlabels: Sequence[str], ylabels: Sequence[str],
          ycolor: tuple[int, int, int], yoff: int) -> None:
    """A frame with a 10x10 grid and tick labels: box = (x0, y0 bottom-left, x1, y1 top-right) pixels."""
    import cv2

    x0, y0, x1, y1 = box
    font = cv2.FONT_HERSHEY_SIMPLEX
    for k in range(11):
        x = int(x0 + (x1 - x0) * k / 10)
        y = int(y0 - (y0 - y1) * k / 10)
        cv2.line(img, (x, y0), (x, y1), (225, 225, 225), 1)
        cv2.line(img, (x0, y), (x1, y), (225, 225, 225), 1)
        cv2.putText(img, xlabels[k], (x - 12, y0 + 20), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, ylabels[k], (x0 + yoff, y + 4), font, 0.4, ycolor, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)


def pr_curves(res: MapResult, names: Sequence[str], path: Path, top: int = 20) -> None:
    """Precision (y) over recall (x) per class with truths, the `top` most frequent; legend with AP."""
    import cv2

    w, h, x0, y0, x1, y1 = 1000, 720, 70, 660, 700, 50
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    axes(img, (x0, y0, x1, y1), [f"{k / 10:.1f}" for k in range(11)], [f"{k / 10:.1f}" for k in range(11)],
          (0, 0, 0), -35)
    cv2.putText(img, "recall", ((x0 + x1) // 2 - 20, y0 + 45), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "precision", (5, y1 - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    title = f"PR curves, mAP@{res.iou_thresh:.2f} = {res.map * 100:.2f} %"
    cv2.putText(img, title, (x0, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    shown = sorted((c for c in res.classes if c.truths > 0), key=lambda c: -c.truths)[:top]
    for n, c in enumerate(shown):
        color = class_color(c.class_id, len(res.classes))
        if len(c.recall):
            r = np.concatenate([[0.0], c.recall])
            p = np.concatenate([[c.precision[0]], c.precision])
            pts = np.stack([x0 + (x1 - x0) * r, y0 - (y0 - y1) * p], 1).round().astype(np.int32)
            cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        name = names[c.class_id] if c.class_id < len(names) else str(c.class_id)
        ly = y1 + 10 + 28 * n
        cv2.line(img, (x1 + 20, ly), (x1 + 50, ly), color, 3)
        cv2.putText(img, f"{name[:18]} {c.ap * 100:.1f}%", (x1 + 58, ly + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    save_png(path, img)


def confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path) -> None:
    """matrix (C+1, C+1): rows = true class, columns = predicted class, the last = background (a missed
    truth, or a detection matching no truth). Only classes that occur are shown."""
    import cv2

    c = matrix.shape[0] - 1
    used = [k for k in range(c) if matrix[k].sum() or matrix[:, k].sum()] + [c]
    m = matrix[np.ix_(used, used)]
    labels = [names[k] if k < c else "background" for k in used]
    n = len(used)
    cell = max(24, min(60, 700 // max(n, 1)))
    left, top = 140, 130
    img = np.full((top + cell * n + 20, left + cell * n + 20, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)  # share of each true class
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            shade = int(255 - 200 * v)
            cv2.rectangle(img, (left + j * cell, top + i * cell), (left + (j + 1) * cell, top + (i + 1) * cell),
                          (255, shade, shade), -1)
            if m[i, j]:
                cv2.putText(img, str(int(m[i, j])), (left + j * cell + 4, top + i * cell + cell // 2 + 4), font, 0.4,
                            (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, labels[i][:16], (5, top + i * cell + cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        col = np.full((cell, 120, 3), 255, np.uint8)
        cv2.putText(col, labels[i][:16], (2, cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        img[top - 120:top, left + i * cell:left + (i + 1) * cell] = np.rot90(col)[:, :cell][:120]
    cv2.putText(img, "true (rows) / predicted (columns)", (5, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    save_png(path, img)
