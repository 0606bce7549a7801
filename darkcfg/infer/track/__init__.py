"""Multi-object tracking: identities for detections across the frames of a video or stream.

`make_tracker(name, ...)` builds one of TRACKERS:
- "bytetrack": ByteTrack (Zhang et al. 2022), Kalman motion and a two-stage IoU association that also uses
  the low-score boxes, optionally with an appearance cue (each box's embedding, cosine similarity).
- "darknet": the reference's demo tracker, http_stream.cpp:set_track_id (embedding cosine similarity blended
  with IoU over the last `track_history_size` frames), for cfgs whose [yolo] has `embedding_layer`.

A tracker's `update(dets)` takes one frame's `DetectionArray` (thresholded, NMS'd) and returns (N,) int64 track
ids, one per row (-1: no track), also stored in `dets.track_ids`; ids start at 1. `reset()` starts a new
sequence.
"""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray

TRACKERS = ("bytetrack", "darknet")


class Tracker(Protocol):
    """What every tracker offers. `detect_thresh`: the threshold the detector should run at for this tracker
    (ByteTrack's low-score bound, below the shown threshold; the darknet tracker's own threshold)."""

    detect_thresh: float

    def update(self, dets: DetectionArray) -> np.ndarray:
        """One frame's detections -> (N,) int64 track id per row (-1: no track); also sets dets.track_ids."""
        ...

    def reset(self) -> None:
        """Forget every track: a new video or sequence (ids start again at 1)."""
        ...


def make_tracker(name: str, *, thresh: float = 0.25, fps: float = 30.0, params: Optional[object] = None,
                 appearance: bool = False, track_buffer: Optional[int] = None) -> Tracker:
    """The tracker called `name` (one of TRACKERS).

    thresh: the detection threshold (a row's shown class is its best class with prob > thresh).
    fps: the video's frame rate (ByteTrack keeps lost tracks for track_buffer * fps / 30 frames).
    params: the cfg's last [yolo] head's options, its `params` (YoloParams; the darknet tracker reads
    track_history_size, sim_thresh, dets_for_track, dets_for_show, track_ciou_norm from it; parser.c's defaults
    where absent).
    appearance: ByteTrack also matches on `dets.embeddings` (cosine) where the frames carry them.
    track_buffer: frames at 30 fps ByteTrack keeps a lost track (None: bytetrack.TRACK_BUFFER, 45).
    ByteTrack keeps at most bytetrack.MAX_TRACKS (1000) live tracks, dropping the lost ones seen longest ago first.
    """
    if name == "bytetrack":
        from darkcfg.infer.track.bytetrack import TRACK_BUFFER, ByteTracker
        return ByteTracker(thresh=thresh, fps=fps, appearance=appearance,
                           track_buffer=TRACK_BUFFER if track_buffer is None else track_buffer)
    if name == "darknet":
        from darkcfg.infer.track.darknet import DarknetTracker
        return DarknetTracker.from_params(params, thresh=thresh)
    raise DarkcfgError(f"unknown tracker {name!r}: expected one of {', '.join(TRACKERS)}")
