"""The reference's text outputs of `detector test`, character for character.

- `text_lines`: image.c:draw_detections_v3's stdout. DetectionArray with a class above thresh, sorted by left
  edge (stable); each prints its best class `name: NN%`, then its other classes above thresh, each line
  with `\\t(left_x: ...   top_y: ...   width: ...   height: ...)` when ext_output.
- `json_object`: image.c:detection_to_json, one `-out` entry; `JsonWriter` writes the whole `[...]` file
  entry by entry and moves it into place atomically at the end.
- Tracked runs (`darkcfg.infer.track`) add each box's track: `car: 81% (id: 7)` in the text (the reference's demo
  labels its boxes `car (id: 7)`), and `"track_id":7` after each object's "confidence" in the JSON, 0 for a box
  without a track (the reference's `detection.track_id` convention: 0 = untracked). The reference's
  detection_to_json itself writes no track_id: the field exists only when tracking. With counting lines the
  JSON entry also carries the running `"counts"` (`LineCounter.counts`) after "objects".
- `label_lines`: the `-save_labels` file: per detection its best class above thresh and the box,
  `"%d %2.4f %2.4f %2.4f %2.4f"`.
Values are float32 computed in C's order, then printed with C's rounding (Python's % formatting of the
same double gives the same digits).
"""
from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np

from darkcfg.infer.detections import DetectionArray

F32 = np.float32


def _percent(p: np.float32) -> str:
    return "%.0f%%" % float(F32(p) * F32(100))


def _ext(dets: DetectionArray, i: int) -> str:
    x, y, w, h = (F32(v) for v in dets.boxes[i])
    iw, ih = F32(dets.width), F32(dets.height)
    half = F32(2)
    vals = (_c_round(float((x - w / half) * iw)), _c_round(float((y - h / half) * ih)),
            _c_round(float(w * iw)), _c_round(float(h * ih)))
    return "\t(left_x: %4.0f   top_y: %4.0f   width: %4.0f   height: %4.0f)" % vals


def track_id(dets: DetectionArray, i: int) -> int:
    """Row i's track id, 0 for none (untracked runs, or a box the tracker gave no track)."""
    if dets.track_ids is None:
        return 0
    return max(int(dets.track_ids[i]), 0)


def text_lines(dets: DetectionArray, thresh: float, ext_output: bool = False) -> list[str]:
    """stdout lines of draw_detections_v3 for one image (no trailing newlines); a tracked box's lines end its
    percentage with ` (id: N)`."""
    lines = []
    t = F32(thresh)
    for i, best in dets.best_classes(thresh):
        ext = _ext(dets, i) if ext_output else ""
        tid = track_id(dets, i)
        if tid:
            ext = f" (id: {tid}){ext}"
        lines.append(f"{dets.name(best)}: {_percent(dets.probs[i, best])}{ext}")
        for j in np.flatnonzero(dets.probs[i] > t):
            if j != best:
                lines.append(f"{dets.name(int(j))}: {_percent(dets.probs[i, j])}{ext}")
    return lines


def _c_round(v: float) -> float:
    """C's round(): halves away from zero (Python's round() goes to even)."""
    return float(np.sign(v) * np.floor(abs(v) + 0.5))


def json_string(s: str) -> str:
    """A JSON string literal (quotes, backslashes and control characters escaped; other text kept as UTF-8)."""
    return json.dumps(s, ensure_ascii=False)


def json_number(v: float) -> str:
    """C's %f for a finite number (the reference's digits); null for inf and NaN, which JSON cannot hold."""
    return "%f" % v if math.isfinite(v) else "null"


def json_object(dets: DetectionArray, frame_id: int, filename: Optional[str], counts: Optional[dict] = None) -> str:
    """detection_to_json: one entry of the `-out` file (without the separators between entries), laid out
    as the reference writes it, with every string escaped by the JSON encoder; without a file name (None) as
    the reference's -json_port sends it. Tracked detections (`dets.track_ids` set) add `"track_id"` to each
    object; `counts` (a counting line's `LineCounter.counts`) is added after the objects."""
    objs = []
    tracked = dets.track_ids is not None
    for i, j in dets.pairs():
        x, y, w, h = (json_number(float(v)) for v in dets.boxes[i])
        track = ', "track_id":%d' % track_id(dets, i) if tracked else ""
        objs.append('  {"class_id":%d, "name":%s, "relative_coordinates":{"center_x":%s, "center_y":%s, '
                    '"width":%s, "height":%s}, "confidence":%s%s}'
                    % (j, json_string(dets.name(j)), x, y, w, h, json_number(float(dets.probs[i, j])), track))
    head = '{\n "frame_id":%d, \n' % frame_id
    if filename is not None:
        head += ' "filename":%s, \n' % json_string(filename)
    tail = "" if counts is None else ', \n "counts":%s' % json.dumps(counts, ensure_ascii=False, separators=(", ", ":"))
    return head + ' "objects": [ \n' + ", \n".join(objs) + "\n ]" + tail + " \n}"


def label_lines(dets: DetectionArray, thresh: float) -> list[str]:
    """`-save_labels`: for each detection with a class above thresh, its best class and (cx, cy, w, h)."""
    out = []
    t = F32(thresh)
    for i in range(len(dets)):
        p = np.where(dets.probs[i] > t, dets.probs[i], F32(0))
        if not (p > 0).any():
            continue
        j = int(p.argmax())
        x, y, w, h = (float(v) for v in dets.boxes[i])
        out.append("%d %2.4f %2.4f %2.4f %2.4f" % (j, x, y, w, h))
    return out


DIRECTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")  # the order counts are printed in


def _num(v: float) -> str:
    return f"{v:g}"


def directions_text(by_dir: dict) -> str:
    """{direction: n} -> `left_to_right 3, right_to_left 1` (directions in DIRECTIONS order)."""
    order = sorted(by_dir, key=lambda d: DIRECTIONS.index(d) if d in DIRECTIONS else len(DIRECTIONS))
    return ", ".join(f"{d} {by_dir[d]}" for d in order)


def count_report(sequence: str, counts: dict) -> list[str]:
    """The counts of a sequence's counting lines (`LineCounter.counts`) as printed at the end of a tracked run:
    `counts in SEQ:`, then per line its total per direction and each class's counts."""
    out = [f"counts in {sequence}:"]
    for k, line in enumerate(counts.get("lines", []), 1):
        x1, y1, x2, y2 = (_num(v) for v in line["line"])
        out.append(f"  line {k} ({x1},{y1} -> {x2},{y2}): {directions_text(line.get('total', {}))}")
        for name, by_dir in line.get("classes", {}).items():
            out.append(f"    {name}: {directions_text(by_dir)}")
    return out
