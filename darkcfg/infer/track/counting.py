"""Counting lines: how many tracks crossed each line, per class and direction.

A line is a segment (x1, y1, x2, y2) in pixels of the frame. A track crosses it when its box centre passes from
one side of the line to the other between two frames where it was seen (with frames between them missing, as
behind an occluder, the path is the straight segment between the two centres) and that path cuts the segment
itself, not its extension. A centre exactly on the line counts on neither side: the crossing is counted when it
reaches the other side. Each track counts at most once per line and direction (so an object wobbling on the
line adds nothing), under the class its box has at the crossing.

Directions are named by the line's orientation: "left_to_right" / "right_to_left" for a line closer to
vertical (|y2 - y1| >= |x2 - x1|), "top_to_bottom" / "bottom_to_top" otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray

Line = tuple[float, float, float, float]


def _side(line: Line, x: float, y: float) -> int:
    """+1 / -1 / 0: which side of the line (x1, y1) -> (x2, y2) the point is on (sign of the cross product)."""
    x1, y1, x2, y2 = line
    c = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    return int(np.sign(c))


def _cuts(line: Line, p: tuple[float, float], q: tuple[float, float]) -> bool:
    """Whether the path p -> q (on strictly opposite sides of the line) meets the segment between its ends."""
    x1, y1, x2, y2 = line
    a = (q[0] - p[0]) * (y1 - p[1]) - (q[1] - p[1]) * (x1 - p[0])  # side of each end of the segment w.r.t. p->q
    b = (q[0] - p[0]) * (y2 - p[1]) - (q[1] - p[1]) * (x2 - p[0])
    return a * b <= 0


def _directions(line: Line) -> tuple[str, str]:
    """The names of crossing from the side with sign +1 to -1, and from -1 to +1."""
    x1, y1, x2, y2 = line
    if abs(y2 - y1) >= abs(x2 - x1):
        left = _side(line, min(x1, x2) - 1.0 - abs(x2 - x1), (y1 + y2) / 2)  # a point left of the line
        return ("left_to_right", "right_to_left") if left > 0 else ("right_to_left", "left_to_right")
    top = _side(line, (x1 + x2) / 2, min(y1, y2) - 1.0 - abs(y2 - y1))
    return ("top_to_bottom", "bottom_to_top") if top > 0 else ("bottom_to_top", "top_to_bottom")


@dataclass
class _Seen:
    """A track's last centre on a side of each line, and the frame it was last seen."""

    where: list[tuple[float, float]]
    side: list[int]
    frame: int
    counted: set[tuple[int, str]] = field(default_factory=set)  # (line, direction) already counted


class LineCounter:
    """Counts tracks crossing `lines` (pixels, (x1, y1, x2, y2) each); `update` once per tracked frame.

    forget: a track not seen for this many frames is forgotten (its next box, if any, starts afresh).
    """

    def __init__(self, lines: Sequence[Sequence[float]], forget: int = 900) -> None:
        self.lines: list[Line] = []
        for i, ln in enumerate(lines):
            v = tuple(float(c) for c in ln)
            if len(v) != 4 or not all(np.isfinite(v)) or (v[0], v[1]) == (v[2], v[3]):
                raise DarkcfgError(f"count line {i + 1}: {','.join(str(c) for c in ln)}: expected x1,y1,x2,y2 in "
                                   "pixels, two distinct finite points")
            self.lines.append(v)  # type: ignore[arg-type]
        self.names = [_directions(ln) for ln in self.lines]
        self.forget = forget
        self.reset()

    def reset(self) -> None:
        self.frame = 0
        self.tracks: dict[int, _Seen] = {}
        self.table: list[dict[str, dict[str, int]]] = [{} for _ in self.lines]  # line -> class -> direction -> n

    def update(self, dets: DetectionArray) -> list[tuple[int, int, str, str]]:
        """One frame's tracked detections (dets.track_ids set) -> the crossings counted in this frame, as
        (line index, track id, class name, direction)."""
        self.frame += 1
        events: list[tuple[int, int, str, str]] = []
        if dets.track_ids is not None and len(dets):
            probs = np.asarray(dets.probs)
            boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
            for i in np.flatnonzero((np.asarray(dets.track_ids) >= 0) & (probs > 0).any(1)):
                tid = int(dets.track_ids[i])
                c = (float(boxes[i, 0]) * dets.width, float(boxes[i, 1]) * dets.height)
                events += self._move(tid, c, dets.name(int(probs[i].argmax())))
        for tid in [t for t, s in self.tracks.items() if self.frame - s.frame > self.forget]:
            del self.tracks[tid]
        return events

    def _move(self, tid: int, c: tuple[float, float], name: str) -> list[tuple[int, int, str, str]]:
        sides = [_side(ln, *c) for ln in self.lines]
        seen = self.tracks.get(tid)
        if seen is None:
            self.tracks[tid] = _Seen([c] * len(self.lines), sides, self.frame)
            return []
        events = []
        for k, (ln, s) in enumerate(zip(self.lines, sides)):
            if s == 0:
                continue
            if seen.side[k] != 0 and s != seen.side[k] and _cuts(ln, seen.where[k], c):
                direction = self.names[k][0] if seen.side[k] > 0 else self.names[k][1]
                if (k, direction) not in seen.counted:
                    seen.counted.add((k, direction))
                    by_dir = self.table[k].setdefault(name, {})
                    by_dir[direction] = by_dir.get(direction, 0) + 1
                    events.append((k, tid, name, direction))
            seen.where[k], seen.side[k] = c, s
        seen.frame = self.frame
        return events

    @property
    def counts(self) -> dict:
        """{"lines": [{"line": [x1, y1, x2, y2], "classes": {name: {direction: n}}, "total": {direction: n}}]}, every
        line with both its directions in "total" (0 where none crossed)."""
        out = []
        for ln, names, table in zip(self.lines, self.names, self.table):
            total = {d: sum(t.get(d, 0) for t in table.values()) for d in names}
            classes = {c: dict(sorted(t.items())) for c, t in sorted(table.items())}
            out.append({"line": list(ln), "classes": classes, "total": total})
        return {"lines": out}
