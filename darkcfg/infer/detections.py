"""Detection records.

`DetectionArray` is Darknet's detection array for one image (what get_network_boxes fills and NMS reorders):
boxes in Darknet's convention, (cx, cy, w, h) relative to the original image, with per-class probabilities
that are 0 where below the threshold or suppressed. `Detection` is one labelled box for users: a class,
its confidence and the box in pixels (x1, y1, x2, y2), which is the convention of every public API here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

F32 = np.float32


@functools.lru_cache(maxsize=8)
def _shown_mask(names: tuple[str, ...], classes: int) -> np.ndarray:
    """(classes,) bool: which classes DetectionArray.shown lets through (computed once per names list)."""
    mask = np.ones(classes, dtype=bool)
    mask[:len(names)] = [not n.startswith("dont_show") for n in names[:classes]]
    return mask


@dataclass
class Detection:
    """One labelled box. `box` is (x1, y1, x2, y2) in pixels of the original image; `relative` is Darknet's
    (cx, cy, w, h) relative to the image."""

    class_id: int
    name: str
    confidence: float
    box: tuple[float, float, float, float]
    relative: tuple[float, float, float, float]
    track_id: Optional[int] = None  # the object's identity across frames, when tracked (`darkcfg.infer.track`)


@dataclass
class DetectionArray:
    """Darknet's detection array for one image.

    boxes (N, 4) float32 (cx, cy, w, h) relative to the image; objectness (N,) float32;
    probs (N, C) float32; width, height: the original image size in pixels.
    embeddings (N, E) float32: each box's appearance vector where the run keeps one (the cfg's
    `embedding_layer`, or the network's feature map at the box), else None. track_ids (N,) int64: each box's
    track when tracked (-1: not assigned to a track), else None.
    """

    boxes: np.ndarray
    objectness: np.ndarray
    probs: np.ndarray
    width: int
    height: int
    source: str = ""
    frame: Optional[int] = None
    names: list[str] = field(default_factory=list, repr=False)
    embeddings: Optional[np.ndarray] = field(default=None, repr=False)
    track_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, classes: int, width: int, height: int) -> DetectionArray:
        return cls(np.zeros((0, 4), F32), np.zeros(0, F32), np.zeros((0, classes), F32), width, height)

    def take(self, order: np.ndarray, probs: Optional[np.ndarray] = None) -> DetectionArray:
        """The detections reordered by `order` (with replaced probabilities, already in the new order)."""
        return DetectionArray(self.boxes[order], self.objectness[order], self.probs[order] if probs is None else probs,
                              self.width, self.height, self.source, self.frame, self.names,
                              None if self.embeddings is None else self.embeddings[order],
                              None if self.track_ids is None else self.track_ids[order])

    def name(self, class_id: int) -> str:
        return self.names[class_id] if class_id < len(self.names) else str(class_id)

    def shown(self, class_id: int) -> bool:
        """Classes whose name starts with 'dont_show' are never printed or drawn (as the reference)."""
        return not self.name(class_id).startswith("dont_show")

    def pairs(self, thresh: float = 0.005) -> list[tuple[int, int]]:
        """(detection, class) with prob > thresh, in array order then class order: the `-out` JSON order
        (detection_to_json uses 0.005 because the probabilities are already thresholded)."""
        rows, cols = np.nonzero(self.probs > F32(thresh))  # row-major: detection, then class
        return [(int(i), int(j)) for i, j in zip(rows, cols) if self.shown(int(j))]

    def best_classes(self, thresh: float) -> list[tuple[int, int]]:
        """image.c:get_actual_detections: (detection, best class) for detections with a shown class whose
        prob > thresh; the best is the first maximum. Then sorted by left edge x - w/2, stably (qsort)."""
        shown = _shown_mask(tuple(self.names), self.probs.shape[1])
        p = np.where(shown[None, :] & (self.probs > F32(thresh)), self.probs, -np.inf)
        keep = np.flatnonzero(np.isfinite(p).any(axis=1)) if len(p) else np.zeros(0, dtype=np.int64)
        best = p[keep].argmax(axis=1) if len(keep) else np.zeros(0, dtype=np.int64)
        left = self.boxes[keep, 0] - self.boxes[keep, 2] / F32(2)
        o = np.argsort(left, kind="stable")
        return [(int(keep[i]), int(best[i])) for i in o]

    def to_list(self, thresh: float = 0.005) -> list[Detection]:
        """Every (box, class) with prob > thresh as `Detection`s, in the reference's `-out` JSON order."""
        out = []
        for i, j in self.pairs(thresh):
            cx, cy, w, h = (float(v) for v in self.boxes[i])
            box = ((cx - w / 2) * self.width, (cy - h / 2) * self.height,
                   (cx + w / 2) * self.width, (cy + h / 2) * self.height)
            track = None if self.track_ids is None or self.track_ids[i] < 0 else int(self.track_ids[i])
            out.append(Detection(j, self.name(j), float(self.probs[i, j]), box, (cx, cy, w, h), track))
        return out
