"""MOTChallenge text files: one row per box, `frame,id,x,y,w,h,conf,x3d,y3d,z3d`.

frame is 1-based; (x, y) is the box's top-left corner and (w, h) its size, in pixels; id is the track (ground
truth: the object); conf is the detector's confidence (ground truth: 1 to evaluate, 0 to ignore the row, as
MOT17's gt.txt marks it); the last three are -1 outside 3-D challenges. Ground-truth files of MOT17 carry a
class in column 8 and a visibility in column 9; `read_mot` keeps columns 7 and 8 for them (`conf`, `cls`).

A benchmark is laid out as MOTChallenge lays it: `<root>/<seq>/gt/gt.txt` (with `<root>/<seq>/seqinfo.ini`, whose
`seqLength` is the number of frames) for the ground truth, `<trackers>/<seq>.txt` for a tracker's output;
`find_sequences` pairs them.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from darkcfg.errors import DarkcfgError


@dataclass
class MotRows:
    """Every row of one MOTChallenge file, as arrays of N rows, in file order.

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
        return self.take(self.frame == frame)

    def take(self, rows: np.ndarray) -> MotRows:
        """The rows selected by a (N,) bool mask or an index array, in that order."""
        return MotRows(self.frame[rows], self.track[rows], self.box[rows], self.conf[rows], self.cls[rows])


def mot_line(frame: int, track: int, x: float, y: float, w: float, h: float, conf: float) -> str:
    """One MOTChallenge row (no newline): `frame,id,x,y,w,h,conf,-1,-1,-1` with 2 decimals for pixels."""
    return f"{frame},{track},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{conf:.4f},-1,-1,-1"


def parse_mot(text: str, name: str = "<text>") -> MotRows:
    """MOTChallenge text -> MotRows. A row must be 6 to 10 finite numbers with a whole frame number >= 1, a whole
    id and w, h >= 0; anything else is a DarkcfgError naming the line. Missing columns read as conf 1, class -1."""
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
            raise DarkcfgError(f"{name}:{n}: expected 6 to 10 comma-separated values "
                               f"(frame,id,x,y,w,h,conf,...), got {len(vals)}: {line[:60]!r}")
        if not all(np.isfinite(vals)):
            raise DarkcfgError(f"{name}:{n}: a value is not a finite number: {line[:60]!r}")
        if vals[0] < 1 or vals[0] != int(vals[0]):
            raise DarkcfgError(f"{name}:{n}: frame {parts[0]}: expected a whole frame number from 1")
        if vals[1] != int(vals[1]):
            raise DarkcfgError(f"{name}:{n}: id {parts[1]}: expected a whole number")
        if vals[4] < 0 or vals[5] < 0:
            raise DarkcfgError(f"{name}:{n}: box size {parts[4]} x {parts[5]}: expected w, h >= 0")
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


def check_unique_ids(rows: MotRows, name: str) -> None:
    """A DarkcfgError naming the file and frame where one id occurs twice in a frame (a track is one box a frame)."""
    if not len(rows):
        return
    key = np.stack([rows.frame, rows.track], axis=1)  # (N, 2)
    uniq, counts = np.unique(key, axis=0, return_counts=True)
    if (counts > 1).any():
        frame, track = uniq[np.argmax(counts > 1)]
        raise DarkcfgError(f"{name}: frame {frame}: id {track} occurs {counts.max()} times; expected one box per id "
                           "in a frame")


def seq_length(ini: Union[str, Path]) -> Optional[int]:
    """`seqLength` of a MOTChallenge seqinfo.ini (the sequence's number of frames), None if the file is absent."""
    path = Path(ini)
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), str(path))
        return int(parser["Sequence"]["seqLength"])
    except (configparser.Error, KeyError, ValueError, OSError, UnicodeDecodeError) as e:
        raise DarkcfgError(f"{path}: expected [Sequence] with seqLength=<frames>: {type(e).__name__}: {e}") from None


def seqinfo_text(name: str, frames: int, width: int, height: int, fps: float, im_dir: str = "img1",
                 im_ext: str = ".jpg") -> str:
    """The text of a MOTChallenge seqinfo.ini (`seq_length` reads it back)."""
    return (f"[Sequence]\nname={name}\nimDir={im_dir}\nframeRate={fps:g}\nseqLength={frames}\nimWidth={width}\n"
            f"imHeight={height}\nimExt={im_ext}\n")


@dataclass
class MotSequence:
    """One sequence to evaluate: its name, ground-truth file, prediction file and frame count (seqinfo.ini's
    seqLength, else None: the last frame of either file)."""

    name: str
    gt: Path
    pred: Path
    length: Optional[int] = None


def _gt_sequences(gt: Path) -> dict[str, tuple[Path, Optional[int]]]:
    """name -> (gt file, seqLength) for a ground-truth file or folder."""
    if gt.is_file():
        seq_dir = gt.parent.parent if gt.name == "gt.txt" and gt.parent.name == "gt" else None
        if seq_dir is not None:
            return {seq_dir.name: (gt, seq_length(seq_dir / "seqinfo.ini"))}
        return {gt.stem: (gt, None)}
    if not gt.is_dir():
        raise DarkcfgError(f"{gt}: no such ground-truth file or folder")
    if (gt / "gt" / "gt.txt").is_file():  # GT is one sequence's folder
        return {gt.name: (gt / "gt" / "gt.txt", seq_length(gt / "seqinfo.ini"))}
    out = {d.name: (d / "gt" / "gt.txt", seq_length(d / "seqinfo.ini"))
           for d in sorted(gt.iterdir()) if (d / "gt" / "gt.txt").is_file()}
    if not out:  # no sequence folders: a folder of <seq>.txt (beside sequence folders, a .txt is a seqmap or notes)
        out = {f.stem: (f, None) for f in sorted(gt.glob("*.txt"))}
    if not out:
        raise DarkcfgError(f"{gt}: no ground truth found; expected <seq>/gt/gt.txt folders or <seq>.txt files")
    return out


def find_sequences(gt: Union[str, Path], pred: Union[str, Path]) -> list[MotSequence]:
    """Pair ground truth and predictions by sequence name, sorted by name.

    gt: a file (`<seq>.txt` or `<seq>/gt/gt.txt`), one sequence's folder (`<seq>/gt/gt.txt` inside), a folder
    of them (`<seq>/gt/gt.txt`, with `<seq>/seqinfo.ini` where present; other files there, such as a seqmap, are
    not sequences) or else a folder of `<seq>.txt` files. pred: a file (for a
    single sequence) or a folder holding `<seq>.txt` for every ground-truth sequence (or `data/<seq>.txt`, as
    TrackEval lays a tracker's folder). A sequence without predictions is a DarkcfgError naming the file expected.
    """
    gt_path, pred_path = Path(gt), Path(pred)
    seqs = _gt_sequences(gt_path)
    if pred_path.is_file():
        if len(seqs) != 1:
            raise DarkcfgError(f"{pred_path}: one prediction file for {len(seqs)} ground-truth sequences "
                               f"({', '.join(list(seqs)[:3])}, ...); expected a folder of <seq>.txt files")
        (name, (g, length)), = seqs.items()
        return [MotSequence(name, g, pred_path, length)]
    if not pred_path.is_dir():
        raise DarkcfgError(f"{pred_path}: no such prediction file or folder")
    out = []
    for name, (g, length) in sorted(seqs.items()):
        p = next((c for c in (pred_path / f"{name}.txt", pred_path / "data" / f"{name}.txt") if c.is_file()), None)
        if p is None:
            raise DarkcfgError(f"{pred_path / (name + '.txt')}: missing: no predictions for sequence {name} "
                               f"(ground truth {g})")
        out.append(MotSequence(name, g, p, length))
    return out
