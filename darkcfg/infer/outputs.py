"""Every file `darkcfg detect` writes: annotated images and videos, YOLO label files, the `-out` JSON file, and
with tracking the MOTChallenge text files (`--mot`, one per sequence: `MotWriter`).

Every file is written to a temporary name beside its destination and renamed into place, so an
interrupted run never leaves a truncated image, label file, video or JSON file behind. Label files beside
the images (`--save-txt` without a folder, as `-save_labels`) never replace existing ones (a dataset's own
labels) unless asked, and no output (annotated image or video, label file, JSON file) is ever written over an
input image or video, also through a symlink or a hard link (`darkcfg.files.Sources`): `Outputs.check` refuses
both before anything runs, and every write checks again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from darkcfg.data.dataset import label_path
from darkcfg.data.mot import mot_line
from darkcfg.errors import DarkcfgError
from darkcfg.files import AtomicFile, Sources, write_bytes, write_text
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.draw import draw_detections
from darkcfg.infer.printout import json_object, label_lines
from darkcfg.infer.sources import Source, video_info


@dataclass
class FrameTrack:
    """A tracked frame's place: its sequence (index into the run's sequence names), its frame number in that
    sequence (from 1, as MOTChallenge counts), and the sequence's counts so far (None without counting lines)."""

    sequence: int
    frame: int
    counts: Optional[dict] = None


class Outputs:
    """Writes what the options asked for, frame by frame.

    out_dir: annotated images (same file name, .jpg for non-JPEG/PNG inputs) and videos (<name>.mp4);
    save_txt: YOLO label files, into out_dir when given, else beside each image like `-save_labels`
    (replacing existing ones only with `overwrite`); json_path: the reference's `-out` JSON file.
    Inputs with the same file name from different folders keep their own outputs: the second one's
    names get `_2`, the third's `_3`, and so on. mot_path: MOTChallenge files of a tracked run (`MotWriter`; the
    sequence names come with `check`). `close()` finishes every file (also after an error).
    """

    def __init__(self, out_dir: Optional[Path], save_txt: bool, thresh: float,
                 json_path: Optional[Union[str, Path]] = None, overwrite: bool = False,
                 mot_path: Optional[Union[str, Path]] = None) -> None:
        self.out_dir, self.save_txt, self.thresh, self.overwrite = out_dir, save_txt, thresh, overwrite
        self.sources = Sources()  # the input files, which no output may be (filled by `check`)
        self.mot_path = mot_path
        self.mot: Optional[MotWriter] = None  # made by `check`, which knows the sequences
        self._json = JsonWriter(json_path, self.sources) if json_path is not None else None
        self._video: Optional[tuple[str, Any, AtomicFile]] = None  # (source path, writer, file)
        self.written: list[Path] = []
        self._stems: dict[str, str] = {}  # source path -> the stem of its outputs, unique in this run
        self._taken: set[str] = set()  # the stems in use (a set: a folder of any size stays linear)

    def check(self, sources: Sequence[Source], sequences: Sequence[str] = ()) -> None:
        """Before a run: refuse (one line) to write any output over an input (naming both), and to replace label
        files beside the images without `overwrite`. The output names of every input are fixed here, in input
        order (so they do not depend on which inputs fail to read); `sequences`: the names of a tracked run's
        sequences (for the --mot files). On a refusal the JSON file is dropped, so nothing at all is written."""
        try:
            if self.mot_path is not None:
                self.mot = MotWriter(self.mot_path, sequences, self.sources)
            self._check(sources)
        except BaseException:
            if self._json is not None:
                self._json.discard()
                self._json = None
            raise

    def _check(self, sources: Sequence[Source]) -> None:
        files = [s for s in sources if s.kind in ("image", "video")]
        for s in files:
            self.sources.add(s.path)
        for dest in self._planned(sources):
            self.sources.check_dest(dest)
        if not self.save_txt or self.out_dir is not None or self.overwrite:
            return
        existing = [p for p in (label_path(s.path) for s in sources if s.kind == "image") if Path(p).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise DarkcfgError(f"{existing[0]}: label file exists{more}; --save-txt beside the images would replace "
                               "it: give --out, or --overwrite")

    def _planned(self, sources: Sequence[Source]) -> list[Path]:
        """Every file this run may write: the JSON file, and per input its annotated image or video and its
        label file."""
        out: list[Path] = [self._json.path] if self._json is not None else []
        out += self.mot.paths if self.mot is not None else []
        for s in sources:
            if self.save_txt and s.kind == "image":
                out.append(self._label_dest(s.path))
            if self.out_dir is not None:
                out.append(self._image_name(s.path) if s.kind == "image" else self._video_name(s.path))
        return out

    def stem(self, src: str) -> str:
        """The file name (without extension) of `src`'s outputs: its own, or with _2, _3, ... when another
        input of this run already has it."""
        if src not in self._stems:
            base = stem = Path(src).stem
            k = 1
            while stem in self._taken:
                k += 1
                stem = f"{base}_{k}"
            self._stems[src] = stem
            self._taken.add(stem)
        return self._stems[src]

    def _image_name(self, src: str) -> Path:
        ext = Path(src).suffix.lower()
        ext = ext if ext in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
        assert self.out_dir is not None
        return self.out_dir / (self.stem(src) + ext)

    def _video_name(self, src: str) -> Path:
        assert self.out_dir is not None
        return self.out_dir / (self.stem(src) + ".mp4")

    def _label_dest(self, src: str) -> Path:
        return (self.out_dir / (self.stem(src) + ".txt")) if self.out_dir else Path(label_path(src))

    def add(self, source: Source, frame: Optional[int], bgr: np.ndarray, dets: DetectionArray,
            track: Optional[FrameTrack] = None) -> None:
        """One frame's outputs; `track`: where a tracked frame belongs (its MOT rows, the counts in the JSON and
        on the picture)."""
        import cv2

        counts = track.counts if track is not None else None
        if self._json is not None:
            self._json.add(dets, source.path, counts)
        if self.mot is not None and track is not None:
            self.mot.add(track.sequence, track.frame, dets)
        if self.save_txt and source.kind == "image":
            dest = self._label_dest(source.path)
            text = "".join(line + "\n" for line in label_lines(dets, self.thresh))
            write_text(dest, text, sources=self.sources)
            self.written.append(dest)
        if self.out_dir is None:
            return
        drawn = draw_detections(bgr, dets, self.thresh, counts)
        if source.kind in ("video", "live"):
            self._video_frame(source, drawn)
            return
        dest = self._image_name(source.path)
        ok, buf = cv2.imencode(dest.suffix, drawn)
        if not ok:
            raise OSError(f"{dest}: OpenCV could not encode the annotated image")
        write_bytes(dest, buf.tobytes(), sources=self.sources)
        self.written.append(dest)

    def _video_frame(self, source: Source, drawn: np.ndarray) -> None:
        import cv2

        if self._video is None or self._video[0] != source.path:
            self.finish_video()
            assert self.out_dir is not None
            file = AtomicFile(self._video_name(source.path), suffix=".mp4", own_handle=False, sources=self.sources)
            fps = source.fps or video_info(source.path)[1]
            h, w = drawn.shape[:2]
            writer = cv2.VideoWriter(str(file.temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                file.discard()
                raise OSError(f"{file.path}: OpenCV cannot write mp4 video here")
            self._video = (source.path, writer, file)
        self._video[1].write(drawn)

    def finish_video(self) -> None:
        if self._video is not None:
            _, writer, file = self._video
            writer.release()
            self.written.append(file.commit())
            self._video = None

    def close(self) -> None:
        """Finish the video being written, the MOT file and the JSON file (an empty `[...]` when no frame came)."""
        try:
            self.finish_video()
        finally:
            if self.mot is not None:
                self.written += self.mot.close()
                self.mot = None
            if self._json is not None:
                self._json.close()
                self.written.append(self._json.path)
                self._json = None


class JsonWriter:
    """Writes the `-out` JSON file as the reference does ("[\\n", entries joined by ", \\n", "\\n]") to a
    temporary file beside `path`, renamed over it on close, so a crash never leaves a half-written file."""

    def __init__(self, path: Union[str, Path], sources: Optional[Sources] = None) -> None:
        self.path = Path(path)
        self._f = AtomicFile(self.path, text=True, sources=sources)
        self._f.file.write("[\n")  # type: ignore[union-attr]
        self.count = 0

    def add(self, dets: DetectionArray, filename: str, counts: Optional[dict] = None) -> None:
        if self.count:
            self._f.file.write(", \n")  # type: ignore[union-attr]
        self.count += 1
        self._f.file.write(json_object(dets, self.count, filename, counts))  # type: ignore[union-attr]

    def close(self) -> None:
        if self._f.done:
            return
        self._f.file.write("\n]")  # type: ignore[union-attr]
        self._f.commit()

    def discard(self) -> None:
        """Drop the file being written; nothing is put in place."""
        self._f.discard()

    def __enter__(self) -> JsonWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mot_paths(path: Union[str, Path], sequences: Sequence[str]) -> list[Path]:
    """Where `--mot PATH` writes each sequence: PATH itself for one sequence; `<PATH stem>_<sequence>.txt` beside
    it for several; `PATH/<sequence>.txt` when PATH is a folder (exists, or ends with a slash), as MOTChallenge
    lays out a tracker's results (what `darkcfg track-eval` reads)."""
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", "\\")):
        return [p / f"{name}.txt" for name in sequences]
    if len(sequences) <= 1:
        return [p]
    return [p.with_name(f"{p.stem}_{name}{p.suffix or '.txt'}") for name in sequences]


LISTED = 0.005  # detection_to_json's bound (DetectionArray.pairs): a probability above it is a JSON object


class MotWriter:
    """The MOTChallenge text of a tracked run (`frame,id,x,y,w,h,conf,-1,-1,-1`, darkcfg.data.mot): one file per
    sequence (`mot_paths`), one row per box that has a track among those the frame's JSON lists (a shown class
    above LISTED: every box above --thresh, and the low-score boxes ByteTrack kept on a track, as
    `darkcfg.infer.run.shown_only` leaves them), by id within a frame; conf is the best class's probability. A
    sequence's file is written to a temporary name and moved into place when the next sequence starts or on
    `close` (a sequence whose every frame failed writes none)."""

    def __init__(self, path: Union[str, Path], sequences: Sequence[str],
                 sources: Optional[Sources] = None) -> None:
        self.paths = mot_paths(path, sequences)
        self.sources = sources
        self._open: Optional[tuple[int, AtomicFile]] = None
        self.written: list[Path] = []

    def add(self, sequence: int, frame: int, dets: DetectionArray) -> None:
        """One frame (from 1) of a sequence (index into the names given): its tracked boxes as rows."""
        if self._open is None or self._open[0] != sequence:
            self._commit()
            self._open = (sequence, AtomicFile(self.paths[sequence], text=True, sources=self.sources))
        rows = []
        if dets.track_ids is not None:
            for i, best in dets.best_classes(LISTED):
                tid = int(dets.track_ids[i])
                if tid < 1:
                    continue
                cx, cy, w, h = (float(v) for v in dets.boxes[i])
                x, y = (cx - w / 2) * dets.width, (cy - h / 2) * dets.height
                rows.append((tid, mot_line(frame, tid, x, y, w * dets.width, h * dets.height,
                                           float(dets.probs[i, best]))))
        f = self._open[1].file
        for _, line in sorted(rows):
            f.write(line + "\n")  # type: ignore[union-attr]

    def _commit(self) -> None:
        if self._open is not None:
            self.written.append(self._open[1].commit())
            self._open = None

    def close(self) -> list[Path]:
        """Finish the file being written; the files written."""
        self._commit()
        return self.written
