"""ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022).

Each frame:
1. every track's Kalman state (kalman.py) moves one frame ahead (a lost track keeps its position velocity and
   stops growing);
2. the high-score boxes (score > `high_thresh`) are matched to the confirmed tracks, tracked or lost, on
   1 - IoU x score (the paper's score fusion), at most `match_thresh`; for a lost track the IoU is the best its
   predicted box reaches when moved towards the box by up to `lost_sigma` standard deviations of its predicted
   centre on each axis (kalman.project: the filter's position variance and its measurement noise; below);
3. the low-score boxes (`low_thresh` < score <= high_thresh) are matched to the still-unmatched tracks that
   were tracked in the previous frame, on 1 - IoU, at most `low_match_thresh`; tracked tracks left unmatched
   become lost;
4. the unconfirmed tracks take the high boxes left over (`new_match_thresh`); a track born of a box scoring
   `sure_thresh` or more is confirmed by this first match and gets its id, one born of a less sure box stays on
   probation until `probation` matches in consecutive frames; an unconfirmed track left unmatched is dropped;
5. the high boxes still left with score >= `new_track_thresh` start unconfirmed tracks (confirmed at once in
   the sequence's first frame);
6. lost tracks older than `track_buffer` frames at 30 fps (TRACK_BUFFER, 45; scaled by fps / 30) are removed,
   and of a tracked and a lost track covering the same box (IoU > 0.85) the younger is removed.

A box's score is its highest class probability (Darknet's objectness x class probability). Ids count from 1 in
the order tracks are confirmed, so they have no gaps. Association ignores classes, as the paper's does.

The reach of a lost track (step 2) is not in the paper, whose lost tracks match on their predicted box alone.
The longer a track is lost, the further its constant-velocity prediction drifts from the object (an object that
passes behind an occluder shrinks in its last boxes, which slows the velocity the filter estimates), and the
filter knows by how much: its position variance grows with every frame predicted. Moving the box by up to half a
standard deviation towards a box before taking the IoU lets a track find its object again where the drift alone
would have started a new id, and leaves a box far from every prediction to a new track. On the generated
sequences (scripts/bench_track.py) LOST_SIGMA 0.5, chosen on sets A and B (3 and 5 sequences), against 0 (the
paper's): A HOTA 48.62 vs 46.04, IDF1 60.61 vs 57.45, ID switches 25 vs 26; B 51.83 vs 51.11, 67.74 vs 65.81,
20 vs 19; and on 12 sequences no lost_sigma was chosen on (make_track_video.py --seed 21, set C) 50.33 vs
49.05, 65.07 vs 62.88, 65 vs 64. A whole standard deviation gained on A and lost on B and the 12; widening the box
instead of moving it (a large box around a small one has a small IoU) gained on A only. (Measured before the probation
and track buffer below took their present values.)

With `appearance` (and frames whose `DetectionArray.embeddings` are set), each track also keeps a running mean
of its boxes' unit embeddings, and in step 2 a lost track may take a high box that its motion no longer overlaps:
where the box lies inside the track's Kalman gate (squared Mahalanobis distance of the centre < `gate`), its
cosine distance to the track is below `appearance_thresh` and at most `ratio` times the distance to the next
closest track, the pair's cost becomes min(IoU cost, cosine distance). Off by default: on the four sets of
docs/benchmarks.md (detections and feature-map embeddings of a yolov4-tiny trained on the shapes set) it gave
HOTA -1.02, -0.02, -1.52 and +0.40 and ID switches +7, +4, +7 and +11 against the defaults without it; an
earlier tracker on 30 sequences: IDF1 61.8 vs 62.2, 155 vs 140 switches.

`new_track_thresh` defaults to thresh + 0.1 (at most halfway from thresh to 1), the ByteTrack code's relation
(det_thresh = track_thresh + 0.1), so that every object shown at thresh + 0.1 or more starts a track (with its
id from its second frame, its sixth when it scored under sure_thresh (step 4), or at once in the sequence's
first frame). A fixed floor of 0.6 (the code's det_thresh
for its track_thresh .5, taken as an absolute value) scored IDF1 62.4 vs 61.1 and 83 vs 125 ID switches on 20 of
those sequences, whose detector is confident, but it left every object the detector scores between thresh and
0.6 shown without an id for as long as it stays there (yolov3-tiny, on the sliding dog.jpg frames of
tests/test_track_cli.py, scores the dog 0.50 in the first frame and the bicycle 0.28 to 0.72); pass
new_track_thresh=0.6 to ByteTracker for it (make_tracker, model.track and the CLI keep the defaults). The
probation of step 4 keeps what the floor gained without that loss: a less sure object gets its id a few frames
later instead of never. It was first SURE_THRESH 0.6 and PROBATION 3 (on 5 sequences no setting had yet been
chosen on, make_track_video.py --seed 5, later set B: ID switches 37 -> 19, HOTA 51.11 vs 51.15). Many ID
switches left were short (set C: 19 of 65 within 3 frames), most of them starting with a box the detector draws
around two touching objects, or a passing object's edge: it started a track that lived through the probation
and then took one of the objects over when the two tracks' costs tied. SURE_THRESH 0.8, PROBATION 5 and
TRACK_BUFFER 45 (from 0.6, 3 and ByteTrack's 30), chosen together on sets A, B and C (docs/benchmarks.md), then
checked on 12 sequences nothing was chosen on (make_track_video.py --seed 33): ID
switches 61 -> 41, HOTA 49.05 -> 49.66, IDF1 64.47 -> 67.12 (A: 25 -> 13, B: 20 -> 13, C: 65 -> 41, HOTA within
1.1 of before on each). The cost: an object scored under 0.8 has its id from its sixth frame (at 30 fps, 0.17 s),
and MOTA up to 2.5 points lower (B; the boxes shown in those frames without an id count as misses).

The live tracks are at most `max_tracks` (default MAX_TRACKS, 1000): a frame with more new boxes than there is
room for first removes the lost tracks seen longest ago, then starts tracks for the highest-scoring new boxes
only, so the tracker's memory stays bounded however long the video (a degenerate one with thousands of boxes in
every frame included).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.track import kalman
from darkcfg.infer.track.assign import assign
from darkcfg.infer.track.boxes import best_class, iou_matrix, nearest_iou, pixel_boxes

TRACKED, LOST = 0, 1
CHI2_2DOF_99 = 9.2103  # chi-square 0.99 quantile at 2 degrees of freedom
NEW_TRACK_MARGIN = 0.1  # the ByteTrack code's det_thresh = track_thresh + 0.1
MAX_TRACKS = 1000  # live tracks (tracked, lost and unconfirmed) at most
SURE_THRESH = 0.8  # a track born of a box scoring at least this is confirmed by its next match
PROBATION = 5  # matches that confirm a track born of a less sure box (in consecutive frames)
TRACK_BUFFER = 45  # frames at 30 fps a lost track is kept (ByteTrack's 30; the module docstring says why)
MAX_TRACK_BUFFER = 1_000_000  # frames at 30 fps (over nine hours): the most track_buffer takes
LOST_SIGMA = 0.5  # a lost track may match as if moved by this many standard deviations of its centre (step 2)


def buffer_error(frames: object) -> Optional[str]:
    """Why `frames` cannot be a track buffer (a whole number of frames, 1 to MAX_TRACK_BUFFER), or None."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= MAX_TRACK_BUFFER:
        return (f"--track-buffer (track_buffer=) {frames!r}: expected a whole number of frames from 1 to "
                f"{MAX_TRACK_BUFFER}")
    return None


def _unit(v: np.ndarray) -> np.ndarray:
    """(N, E) -> rows scaled to length 1 (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


class ByteTracker:
    """ByteTrack with Darknet detections; see the module docstring for the algorithm and the thresholds.

    Args:
        thresh: the high-score threshold (default the detection threshold .25): boxes above it are the ones
            a user sees and start tracks.
        low_thresh: boxes with a score in (low_thresh, thresh] only continue tracks (the detector must run
            at a threshold <= low_thresh for there to be any: `detect_thresh`).
        new_track_thresh: the least score that starts a track (default thresh + 0.1, at most (thresh + 1) / 2).
        sure_thresh, probation: a track born of a box scoring at least sure_thresh is confirmed by its next
            match, one born of a less sure box by `probation` consecutive matches (step 4).
        match_thresh, low_match_thresh, new_match_thresh: the largest association costs of steps 2, 3, 4.
        track_buffer: frames (at 30 fps) a lost track waits to be found again.
        fps: the video's frame rate.
        fuse_score: multiply IoU by the box score in steps 2 and 4.
        appearance: use `dets.embeddings` to find lost tracks again (module docstring); appearance_thresh: the
            largest cosine distance (1 - cos) that counts as the same object; ratio: how much closer than the
            next track it must be; momentum: the weight of a track's old embedding in its running mean; gate:
            the squared Mahalanobis distance bound.
        lost_sigma: in step 2 a lost track's predicted box may move towards a box by up to this many standard
            deviations of its predicted centre on each axis before the IoU is taken (0: ByteTrack's box only).
        max_tracks: the most tracks kept at once (module docstring): when new boxes need room, the lost tracks
            seen longest ago go first; with none left to drop, only the highest-scoring new boxes start tracks.
    """

    def __init__(self, thresh: float = 0.25, low_thresh: float = 0.1, new_track_thresh: Optional[float] = None,
                 match_thresh: float = 0.8, low_match_thresh: float = 0.5, new_match_thresh: float = 0.7,
                 track_buffer: int = TRACK_BUFFER, fps: float = 30.0, fuse_score: bool = True, appearance: bool = False,
                 appearance_thresh: float = 0.15, ratio: float = 0.7, momentum: float = 0.9,
                 gate: float = CHI2_2DOF_99, max_tracks: int = MAX_TRACKS, sure_thresh: float = SURE_THRESH,
                 probation: int = PROBATION, lost_sigma: float = LOST_SIGMA) -> None:
        self.high_thresh, self.low_thresh = float(thresh), float(min(low_thresh, thresh))
        self.new_track_thresh = min(self.high_thresh + NEW_TRACK_MARGIN, (self.high_thresh + 1.0) / 2) \
            if new_track_thresh is None else float(new_track_thresh)
        if max_tracks < 1:
            raise DarkcfgError(f"max_tracks={max_tracks}: expected at least 1")
        if reason := buffer_error(track_buffer):
            raise DarkcfgError(reason)
        self.max_tracks = int(max_tracks)
        if probation < 1 or not 0.0 <= sure_thresh <= 1.0:
            raise DarkcfgError(f"probation={probation}, sure_thresh={sure_thresh}: expected probation >= 1 and "
                               "sure_thresh in [0, 1]")
        self.sure_thresh, self.probation = float(sure_thresh), int(probation)
        self.match_thresh, self.low_match_thresh = match_thresh, low_match_thresh
        self.new_match_thresh = new_match_thresh
        self.max_lost = max(1, int(round(track_buffer * (fps if fps and fps > 0 else 30.0) / 30.0)))
        self.fuse_score = fuse_score
        self.appearance, self.appearance_thresh, self.ratio = appearance, appearance_thresh, ratio
        self.momentum, self.gate = momentum, gate
        if not lost_sigma >= 0:
            raise DarkcfgError(f"lost_sigma={lost_sigma}: expected a number >= 0")
        self.lost_sigma = float(lost_sigma)
        self.reset()

    @property
    def detect_thresh(self) -> float:
        """The threshold the detector should run at to give this tracker its low-score boxes."""
        return self.low_thresh

    def reset(self) -> None:
        self.frame = 0
        self.next_id = 1
        self.mean = np.zeros((0, 8))  # (T, 8) Kalman state per track
        self.cov = np.zeros((0, 3, 4))  # (T, 3, 4) its covariance blocks (kalman.py)
        self.tid = np.zeros(0, np.int64)  # (T,) id, -1 while unconfirmed
        self.need = np.zeros(0, np.int64)  # (T,) matches an unconfirmed track still needs for its id
        self.state = np.zeros(0, np.int8)  # (T,) TRACKED or LOST
        self.start = np.zeros(0, np.int64)  # (T,) frame of the first box
        self.last = np.zeros(0, np.int64)  # (T,) frame of the last box
        self.emb: Optional[np.ndarray] = None  # (T, E) unit running-mean embedding, with appearance

    # -- the frame ---------------------------------------------------------------------------------------
    def update(self, dets: DetectionArray) -> np.ndarray:
        """One frame's detections -> (N,) int64 track id per row (-1: none); also sets dets.track_ids."""
        self.frame += 1
        n = len(dets)
        ids = np.full(n, -1, np.int64)
        score, _ = best_class(dets.probs) if n else (np.zeros(0), None)
        boxes = pixel_boxes(dets)  # (N, 4) cx, cy, w, h in pixels
        z = kalman.xyah(boxes)
        emb = None
        if self.appearance and dets.embeddings is not None and n:
            emb = _unit(np.asarray(dets.embeddings, np.float64).reshape(n, -1))
        if emb is not None and (self.emb is None or self.emb.shape[1] != emb.shape[1]):
            self.emb = np.zeros((len(self.tid), emb.shape[1]))  # embeddings start (or change size): fresh means
        high = (score > self.high_thresh).nonzero()[0]
        low = ((score > self.low_thresh) & (score <= self.high_thresh)).nonzero()[0]

        if len(self.tid):
            self.mean[self.state == LOST, 7] = 0.0  # a lost box keeps its size
            self.mean, self.cov = kalman.predict(self.mean, self.cov)
        # every track's predicted box (a lost track's within its reach) x every box, once for the three steps: an
        # unconfirmed track is never lost (unmatched, it ends) and step 2 takes tracked tracks only
        iou = nearest_iou(kalman.cxcywh(self.mean), self._reach(), boxes)  # (T, N)
        fused = iou * score[None] if self.fuse_score else iou
        was_tracked = self.state == TRACKED
        confirmed = (self.tid >= 0).nonzero()[0]
        updates: list[tuple[np.ndarray, np.ndarray]] = []  # (track indices, row indices) to correct

        # 1. high boxes x confirmed tracks (tracked or lost)
        cost = self._appearance(1.0 - fused[confirmed][:, high], confirmed, high, emb, z)
        pairs, free_t, free_h = assign(cost, self.match_thresh)
        updates.append((confirmed[pairs[:, 0]], high[pairs[:, 1]]))
        # 2. low boxes x the tracks still unmatched that were tracked
        rest = confirmed[free_t]
        rest = rest[was_tracked[rest]]
        pairs2, free_r, _ = assign(1.0 - iou[rest][:, low], self.low_match_thresh)
        updates.append((rest[pairs2[:, 0]], low[pairs2[:, 1]]))
        self.state[rest[free_r]] = LOST
        # 3. high boxes left x unconfirmed tracks
        left = high[free_h]
        unconf = (self.tid < 0).nonzero()[0]
        pairs3, free_u, free_l = assign(1.0 - fused[unconf][:, left], self.new_match_thresh)
        matched = unconf[pairs3[:, 0]]
        updates.append((matched, left[pairs3[:, 1]]))
        self.need[matched] -= 1
        born = matched[self.need[matched] <= 0]

        tracks = np.concatenate([u[0] for u in updates]).astype(np.int64)
        rows = np.concatenate([u[1] for u in updates]).astype(np.int64)
        self.tid[born] = np.arange(self.next_id, self.next_id + len(born))
        self.next_id += len(born)
        if len(tracks):
            self.mean[tracks], self.cov[tracks] = kalman.update(self.mean[tracks], self.cov[tracks], z[rows])
            self.state[tracks] = TRACKED
            self.last[tracks] = self.frame
            if emb is not None and self.emb is not None:
                old = self.emb[tracks]
                fresh = ~old.any(1)
                mixed = np.where(fresh[:, None], emb[rows], self.momentum * old + (1 - self.momentum) * emb[rows])
                self.emb[tracks] = _unit(mixed)
            ids[rows] = self.tid[tracks]

        # unmatched unconfirmed tracks end; 4. new tracks from the high boxes left
        keep = np.ones(len(self.tid), bool)
        keep[unconf[free_u]] = False
        new = left[free_l]
        new = new[score[new] >= self.new_track_thresh]
        self._drop(~keep)
        new = self._make_room(new, score)
        if len(new):
            self._add(z[new], None if emb is None else emb[new],
                      np.where(score[new] >= self.sure_thresh, 1, self.probation))
            if self.frame == 1:  # the sequence's first frame: confirmed at once
                k = len(new)
                self.tid[-k:] = np.arange(self.next_id, self.next_id + k)
                self.next_id += k
                ids[new] = self.tid[-k:]
        # 5. lost too long; duplicates
        self._drop((self.state == LOST) & (self.frame - self.last > self.max_lost))
        dropped = self._drop_duplicates()
        if len(dropped):
            ids[np.isin(ids, dropped)] = -1  # a box whose track was just dropped as a duplicate
        dets.track_ids = ids
        return ids

    # -- helpers ------------------------------------------------------------------------------------------
    def _reach(self) -> Optional[np.ndarray]:
        """(T, 2) how far (x, y) each track's predicted box may move towards a box (step 2): `lost_sigma` standard
        deviations of a lost track's predicted centre, 0 for the others; None where no track moves."""
        away = (self.state == LOST).nonzero()[0]
        if self.lost_sigma <= 0 or not len(away):
            return None
        reach = np.zeros((len(self.tid), 2))
        _, s = kalman.project(self.mean[away], self.cov[away])  # (L, 4) variances
        reach[away] = self.lost_sigma * np.sqrt(s[:, :2])  # x and y standard deviations
        return reach

    def _appearance(self, cost: np.ndarray, tracks: np.ndarray, rows: np.ndarray, emb: Optional[np.ndarray],
                    z: np.ndarray) -> np.ndarray:
        """The first association's cost (T, N) of `tracks` x `rows`, lowered by appearance where it applies
        (module docstring); `cost` itself without embeddings."""
        if emb is None or self.emb is None or not len(tracks) or not len(rows):
            return cost
        known = self.emb[tracks].any(1)  # (T,)
        lost = known & (self.state[tracks] == LOST)
        if not lost.any():
            return cost
        gated = kalman.mahalanobis(self.mean[tracks[lost]], self.cov[tracks[lost]], z[rows]) < self.gate
        t, k = np.nonzero(gated)  # (P,) pairs of a lost track (among `lost`) and a plausible box
        if not len(t):
            return cost
        t = lost.nonzero()[0][t]
        cols = np.unique(k)
        dist = 1.0 - self.emb[tracks[known]] @ emb[rows[cols]].T  # (K, C) every known track x those boxes
        nearest = np.sort(dist, axis=0)  # per box: the closest tracks
        second = nearest[1] if len(nearest) > 1 else np.full(len(cols), 2.0)
        d = 1.0 - np.einsum("pe,pe->p", self.emb[tracks[t]], emb[rows[k]])  # (P,)
        at = np.searchsorted(cols, k)
        ok = (d < self.appearance_thresh) & (d <= self.ratio * second[at])  # close, and clearly the closest
        cost[t[ok], k[ok]] = np.minimum(cost[t[ok], k[ok]], d[ok])
        return cost

    def _make_room(self, new: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Rows `new` (ascending) that are to start tracks -> those that may, with `max_tracks` kept: the lost
        tracks seen longest ago are removed to make room, then the highest-scoring rows are kept (ascending)."""
        need = len(self.tid) + len(new) - self.max_tracks
        if need <= 0:
            return new
        lost = (self.state == LOST).nonzero()[0]
        if len(lost):
            oldest = lost[np.argsort(self.last[lost], kind="stable")[:need]]  # seen longest ago first
            gone = np.zeros(len(self.tid), bool)
            gone[oldest] = True
            self._drop(gone)
        room = max(0, self.max_tracks - len(self.tid))
        if len(new) > room:
            new = np.sort(new[np.argsort(-score[new], kind="stable")[:room]])
        return new

    def _add(self, z: np.ndarray, emb: Optional[np.ndarray], need: Optional[np.ndarray] = None) -> None:
        mean, cov = kalman.initiate(z)
        k = len(z)
        self.need = np.concatenate([self.need, np.ones(k, np.int64) if need is None else need.astype(np.int64)])
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.tid = np.concatenate([self.tid, np.full(k, -1, np.int64)])
        self.state = np.concatenate([self.state, np.full(k, TRACKED, np.int8)])
        self.start = np.concatenate([self.start, np.full(k, self.frame, np.int64)])
        self.last = np.concatenate([self.last, np.full(k, self.frame, np.int64)])
        if self.emb is not None:
            self.emb = np.concatenate([self.emb, emb if emb is not None else np.zeros((k, self.emb.shape[1]))])

    def _drop(self, gone: np.ndarray) -> None:
        if not gone.any():
            return
        keep = ~gone
        self.mean, self.cov, self.tid = self.mean[keep], self.cov[keep], self.tid[keep]
        self.state, self.start, self.last = self.state[keep], self.start[keep], self.last[keep]
        self.need = self.need[keep]
        if self.emb is not None:
            self.emb = self.emb[keep]

    def _drop_duplicates(self) -> np.ndarray:
        """Of a confirmed tracked and a lost track whose boxes overlap with IoU > 0.85, drop the younger (the
        tracked one at equal ages, as ByteTrack's remove_duplicate_stracks). Returns the dropped tracked ids."""
        none = np.zeros(0, np.int64)
        tracked = ((self.state == TRACKED) & (self.tid >= 0)).nonzero()[0]
        lost = (self.state == LOST).nonzero()[0]
        if not len(tracked) or not len(lost):
            return none
        box = kalman.cxcywh(self.mean)
        a, b = np.nonzero(iou_matrix(box[tracked], box[lost]) > 0.85)
        if not len(a):
            return none
        ta, tb = tracked[a], lost[b]
        age_a, age_b = self.last[ta] - self.start[ta], self.last[tb] - self.start[tb]
        gone = np.zeros(len(self.tid), bool)
        gone[np.where(age_a > age_b, tb, ta)] = True
        dropped = self.tid[gone & (self.state == TRACKED)]
        self._drop(gone)
        return dropped
