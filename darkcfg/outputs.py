"""Where `darkcfg detect` puts its results: annotated images and videos, YOLO label files, the JSON file.

Every file is written to a temporary name beside its destination and renamed into place, so an
interrupted run never leaves a truncated image, label file or video behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from darkcfg.dataset import label_path
from darkcfg.detections import Detections
from darkcfg.draw import draw_detections
from darkcfg.report import label_lines
from darkcfg.sources import Source, video_info
from darkcfg.weights import atomic_write


def write_file(path: Path, data: bytes) -> None:
    """An output file, written atomically (weights.atomic_write without the fsync)."""
    atomic_write(path, lambda fh: fh.write(data), durable=False)


class Outputs:
    """Writes what the options asked for, frame by frame.

    out_dir: annotated images (same file name, .jpg for non-JPEG/PNG inputs) and videos (<name>.mp4);
    save_txt: YOLO label files, into out_dir when given, else beside each image like `-save_labels`.
    """

    def __init__(self, out_dir: Optional[Path], save_txt: bool, thresh: float) -> None:
        self.out_dir, self.save_txt, self.thresh = out_dir, save_txt, thresh
        self._video: Optional[tuple[str, Any, str, Path]] = None  # (source path, writer, tmp, final)
        self.written: list[Path] = []

    def _image_name(self, src: str) -> Path:
        p = Path(src)
        ext = p.suffix.lower() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
        assert self.out_dir is not None
        return self.out_dir / (p.stem + ext)

    def add(self, source: Source, frame: Optional[int], bgr: np.ndarray, dets: Detections) -> None:
        import cv2

        if self.save_txt and source.kind == "image":
            dest = (self.out_dir / (Path(source.path).stem + ".txt")) if self.out_dir else Path(label_path(source.path))
            text = "".join(line + "\n" for line in label_lines(dets, self.thresh))
            write_file(dest, text.encode())
            self.written.append(dest)
        if self.out_dir is None:
            return
        drawn = draw_detections(bgr, dets, self.thresh)
        if source.kind == "video":
            self._video_frame(source, drawn)
            return
        dest = self._image_name(source.path)
        ok, buf = cv2.imencode(dest.suffix, drawn)
        if not ok:
            raise OSError(f"{dest}: OpenCV could not encode the annotated image")
        write_file(dest, buf.tobytes())
        self.written.append(dest)

    def _video_frame(self, source: Source, drawn: np.ndarray) -> None:
        import cv2

        if self._video is None or self._video[0] != source.path:
            self.finish_video()
            assert self.out_dir is not None
            self.out_dir.mkdir(parents=True, exist_ok=True)
            final = self.out_dir / (Path(source.path).stem + ".mp4")
            tmp = str(final.with_name(final.stem + ".part.mp4"))
            _, fps, _, _ = video_info(source.path)
            h, w = drawn.shape[:2]
            writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                raise OSError(f"{final}: OpenCV cannot write mp4 video here")
            self._video = (source.path, writer, tmp, final)
        self._video[1].write(drawn)

    def finish_video(self) -> None:
        if self._video is not None:
            _, writer, tmp, final = self._video
            writer.release()
            os.replace(tmp, final)
            self.written.append(final)
            self._video = None

    def close(self) -> None:
        self.finish_video()
