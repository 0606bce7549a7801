"""The training chart (the reference's chart.png): average loss over iterations, and mAP when measured."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from darkcfg.eval.plots import axes, save_png


def training_chart(iterations: Sequence[int], losses: Sequence[float], max_batches: int, path: Path,
                   maps: Sequence[tuple[int, float]] = (), max_loss: float = 20.0, title: str = "") -> None:
    """The reference's chart.png: average loss (blue) over iterations, mAP@0.5 (red, right axis) when
    measured. The loss axis tops at max(max_chart_loss, ...) like the reference's `max_chart_loss`."""
    import cv2

    w, h, x0, y0, x1, y1 = 1000, 700, 70, 640, 920, 50
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    top = max(max_loss, 1e-6)
    span = max(1, max_batches)
    axes(img, (x0, y0, x1, y1), [f"{int(span * k / 10)}" for k in range(11)],
          [f"{top * k / 10:.2f}" for k in range(11)], (160, 0, 0), -55)
    if maps:
        for k in range(11):
            y = int(y0 - (y0 - y1) * k / 10)
            cv2.putText(img, f"{k * 10}%", (x1 + 8, y + 4), font, 0.4, (0, 0, 200), 1, cv2.LINE_AA)
    cv2.putText(img, "iteration", ((x0 + x1) // 2 - 30, y0 + 45), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if len(iterations):
        it = np.asarray(iterations, np.float64)
        lo = np.clip(np.asarray(losses, np.float64), 0, top)
        pts = np.stack([x0 + (x1 - x0) * it / span, y0 - (y0 - y1) * lo / top], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, (200, 0, 0), 2, cv2.LINE_AA)
        last = f"avg loss {losses[-1]:.4f} at iteration {iterations[-1]}"
        cv2.putText(img, last, (x0, 30), font, 0.55, (160, 0, 0), 1, cv2.LINE_AA)
    if maps:
        m = np.asarray(maps, np.float64)
        pts = np.stack([x0 + (x1 - x0) * m[:, 0] / span, y0 - (y0 - y1) * m[:, 1]], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, (0, 0, 220), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 3, (0, 0, 220), -1)
        cv2.putText(img, f"mAP@0.5 {maps[-1][1] * 100:.2f}%", (x0 + 450, 30), font, 0.55, (0, 0, 200), 1,
                    cv2.LINE_AA)
    if title:
        cv2.putText(img, title, (x0, h - 10), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    save_png(path, img)
