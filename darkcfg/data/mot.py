"""MOTChallenge text files: one row per box, `frame,id,x,y,w,h,conf,x3d,y3d,z3d`.

frame is 1-based; (x, y) is the box's top-left corner and (w, h) its size, in pixels; id is the track (ground
truth: the object); conf is the detector's confidence (ground truth: 1 to evaluate, 0 to ignore the row, as
MOT17's gt.txt marks it); the last three are -1 outside 3-D challenges. Ground-truth files of MOT17 carry a
class in column 8 and a visibility in column 9; `read_mot` keeps columns 7 and 8 for them (`conf`, `cls`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from darkcfg.errors import DarkcfgError


@dataclass
class MotRows:
    """Every row of one MOTChallenge file, as arrays of N rows.

    frame (N,) int64, 1-based; track (N,) int64; box (N, 4) float64 (x, y, w, h) in pixels; conf (N,) float64;
    cls (N,) int64: column 8 (MOT17 ground truth's class; -1 where absent).
    """

    frame: np.ndarray
    track: np.ndarray
    box: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def frames(self) -> int:
        """The last frame number (0 for an empty file)."""
        return int(self.frame.max()) if len(self.frame) else 0

    def at(self, frame: int) -> MotRows:
        """The rows of one frame (1-based)."""
        m = self.frame == frame
        return MotRows(self.frame[m], self.track[m], self.box[m], self.conf[m], self.cls[m])


def mot_line(frame: int, track: int, x: float, y: float, w: float, h: float, conf: float) -> str:
    """One MOTChallenge row (no newline): `frame,id,x,y,w,h,conf,-1,-1,-1` with 2 decimals for pixels."""
    return f"{frame},{track},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{conf:.4f},-1,-1,-1"


def parse_mot(text: str, name: str = "<text>") -> MotRows:
    """MOTChallenge text -> MotRows; a row that is not 6 to 10 numbers is a DarkcfgError naming the line."""
    rows: list[list[float]] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace(" ", "").split(",")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise DarkcfgError(f"{name}:{n}: expected `frame,id,x,y,w,h,conf,...` numbers, got {line[:60]!r}") from None
        if not 6 <= len(vals) <= 10:
            raise DarkcfgError(f"{name}:{n}: expected 6 to 10 comma-separated values, got {len(vals)}")
        if not all(np.isfinite(vals)):
            raise DarkcfgError(f"{name}:{n}: a value is not a finite number: {line[:60]!r}")
        if vals[0] < 1 or vals[0] != int(vals[0]):
            raise DarkcfgError(f"{name}:{n}: frame {parts[0]}: expected a frame number from 1")
        vals += [1.0, -1.0][len(vals) - 6:] if len(vals) < 8 else []
        rows.append(vals[:8])
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    return MotRows(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6].copy(), a[:, 6].copy(),
                   a[:, 7].astype(np.int64))


def read_mot(path: Union[str, Path]) -> MotRows:
    """A MOTChallenge file -> MotRows (see `parse_mot`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DarkcfgError(f"{path}: cannot read MOTChallenge file: {e}") from None
    return parse_mot(text, str(path))


def format_mot(rows: Iterable[tuple[int, int, float, float, float, float, float]]) -> str:
    """(frame, id, x, y, w, h, conf) tuples -> the file's text, one `mot_line` per row."""
    return "".join(mot_line(*r) + "\n" for r in rows)
