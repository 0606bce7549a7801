"""The detector of `darknet detector test`, batched and streaming, and the Python API (`model.detect`,
`model.stream`).

For each image: pre-process (resize_image, or letterbox_image when letterboxing), run the network,
decode the heads (decode.py), then NMS (nms.py) with the last head's nms_kind and beta_nms. Images are
grouped into batches of `batch` for one forward each; loading and pre-processing run in worker threads
ahead of the network, with a bounded look-ahead, so any number of images streams in constant memory.
The command's run over sources (printout, files, ports) is `darkcfg.infer.run`; building a Detector from a
cfg, weights and runtime choice is `darkcfg.infer.runtime`.

Tiled (`tiles`, a `darkcfg.infer.tiles.Tiling`), each image becomes several network inputs (its tiles, and
with `full` the whole image); they go through the same batcher: one forward carries every tile of `batch`
images (at most MAX_TILE_PIXELS of network input, 64 tiles of 416 x 416; more are split into equal forwards),
and each image's tile detections are mapped back and merged (`tiles.merge_tiles`) into one DetectionArray of
the image. Loading, cropping and pre-processing the tiles run in the worker threads.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from darkcfg.data.images import bgr_to_image, read_bgr
from darkcfg.errors import DarkcfgError
from darkcfg.infer.decode import decode
from darkcfg.infer.detections import Detection, DetectionArray
from darkcfg.infer.names import default_names
from darkcfg.infer.nms import nms_sort
from darkcfg.infer.preprocess import prepare
from darkcfg.infer.sources import Frame, LiveOptions, expand_sources, iter_frames
from darkcfg.infer.tiles import MAX_TILE_PIXELS, Tile, Tiling, crop, merge_tiles, tile_plan
from darkcfg.infer.track.appearance import EmbeddingTap
from darkcfg.model.heads import last_head
from darkcfg.model.network import Darknet

ImageInput = Union[str, Path, np.ndarray]
TilesArg = Union[None, str, Tiling]
Inputs = tuple[list[np.ndarray], list[Tile]]  # an image's network inputs and their tiles


@dataclass
class Result:
    """What the pipeline gives for one frame: the detections after NMS, or the error that stopped it."""

    frame: Frame
    image: Optional[np.ndarray]  # (H, W, 3) uint8 BGR, the original
    detections: Optional[DetectionArray]
    error: Optional[str] = None
    ms: float = 0.0  # this image's share of its batch's forward + decode + NMS (+ tile merge) time


class Detector:
    """A network plus the settings of `detector test`.

    Args:
        model: a Darknet network ending in [yolo]/[Gaussian_yolo]/[region] heads.
        names: class names (index = class id); shorter lists are padded with the ids.
        thresh: detection threshold (strict >), default .25 like `detector test`.
        nms: NMS threshold, default .45; 0 disables NMS, as in the reference.
        letterbox: letterbox the input; None means the cfg's [net] letter_box.
        batch: images per forward (tiled: the tiles of that many images, module docstring).
        tiles: detect on tiles of each image (`darkcfg.infer.tiles`): a Tiling, or its text (`auto`, `2x3`,
            `640px`); None: whole images.
        embeddings: also give each box its appearance vector (`DetectionArray.embeddings`, for tracking):
            "layer" (the cfg's [yolo] embedding_layer, as the reference), "features" (the network's feature map
            pooled in the box), "auto" or True (layer where the cfg has one, else features); None/False: none
            (no cost). A tiled image's merged detections carry none.
    """

    def __init__(self, model: torch.nn.Module, names: Optional[Sequence[str]] = None, thresh: float = 0.25,
                 nms: float = 0.45, letterbox: Optional[bool] = None, batch: int = 1, tiles: TilesArg = None,
                 embeddings: Union[None, bool, str] = None) -> None:
        self.model = model
        last = last_head(model)
        self.classes = last.classes
        self.names = list(names) if names is not None else []
        self.names += [str(i) for i in range(len(self.names), self.classes)]
        self.thresh, self.nms = thresh, nms
        self.nms_kind, self.beta_nms = last.nms_kind, last.beta_nms
        self.letterbox = bool(model.net.letter_box) if letterbox is None else bool(letterbox)
        if batch < 1:
            raise ValueError(f"batch={batch}: expected a positive number of images per forward")
        self.batch = batch
        self.tiles = Tiling.parse(tiles) if isinstance(tiles, str) else tiles
        if self.tiles is not None and self.stateful:
            raise DarkcfgError(f"{getattr(model, 'cfg_file', 'the network')}: --tiles: a recurrent network carries "
                               "its state from frame to frame; tiles are independent images: detect without tiles")
        self.tap: Optional[EmbeddingTap] = None
        if embeddings:
            self.tap = EmbeddingTap(model, "auto" if embeddings is True else str(embeddings))
            if getattr(model, "cuda_graphs", False):
                model.cuda_graphs = False  # a replayed graph runs no hooks: the embedding layers are read live

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def prepare(self, im: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 Darknet image -> (C, net_h, net_w) network input."""
        return prepare(im, self.model.net.width, self.model.net.height, self.letterbox)

    def to_image(self, bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR -> the Darknet image the cfg wants: RGB, or grey for channels=1 (as
        load_image(path, 0, 0, 1) reads it)."""
        c = self.model.net.channels
        if c == 3:
            return bgr_to_image(bgr)
        if c == 1:
            import cv2

            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
            return grey[None].astype(np.float32) / np.float32(255.0)
        raise DarkcfgError(f"{self.model.cfg_file}: [net] channels={c}: detection on images needs 1 or 3 channels")

    def plan(self, width: int, height: int) -> list[Tile]:
        """The network inputs of a width x height image as tiles (pixels): the whole image, untiled."""
        if self.tiles is None:
            return [Tile(0, 0, width, height)]
        return tile_plan(width, height, self.tiles, self.model.net.width, self.model.net.height)

    def inputs(self, im: np.ndarray) -> Inputs:
        """A Darknet image (C, H, W) -> its network inputs, each (C, net_h, net_w), and their tiles."""
        tiles = self.plan(im.shape[2], im.shape[1])
        if len(tiles) == 1:
            return [self.prepare(im)], tiles
        return [self.prepare(crop(im, t)) for t in tiles], tiles

    @property
    def max_inputs(self) -> int:
        """The most network inputs in one forward: `batch`, and tiled at least MAX_TILE_PIXELS' worth."""
        if self.tiles is None:
            return self.batch
        return max(self.batch, MAX_TILE_PIXELS // (self.model.net.width * self.model.net.height))

    def run_images(self, items: Sequence[tuple[Sequence[np.ndarray], Sequence[Tile], tuple[int, int]]]
                   ) -> list[DetectionArray]:
        """Images as (network inputs, their tiles, original (width, height)) -> one DetectionArray each: all the
        inputs in as few forwards of at most `max_inputs` as they take (of equal size), each tile's detections
        mapped back to its image and merged (`tiles.merge_tiles`; an untiled image's array as it is)."""
        xs = [x for inputs, _, _ in items for x in inputs]
        sizes = [(t.w, t.h) for _, tiles, _ in items for t in tiles]
        forwards = -(-len(xs) // self.max_inputs)
        step = -(-len(xs) // max(1, forwards))
        dets: list[DetectionArray] = []
        for i in range(0, len(xs), max(1, step)):
            dets += self.run_batch(xs[i:i + step], sizes[i:i + step])
        out, k = [], 0
        for _, tiles, (w, h) in items:
            out.append(merge_tiles(tiles, dets[k:k + len(tiles)], w, h, self.tiles or Tiling(), self.thresh, self.nms,
                                   self.nms_kind, self.beta_nms))
            k += len(tiles)
        return out

    def postprocess(self, dets: DetectionArray) -> DetectionArray:
        """NMS as test_detector does (none when nms is 0); names attached."""
        dets.names = self.names
        if self.nms and len(dets):
            order, probs = nms_sort(dets.boxes, dets.objectness, dets.probs, self.nms, self.nms_kind, self.beta_nms)
            dets = dets.take(order, probs)
        return dets

    @torch.inference_mode()
    def run_batch(self, inputs: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[DetectionArray]:
        """inputs: B network inputs (3, net_h, net_w); sizes: B original (width, height) -> B DetectionArray."""
        x = torch.from_numpy(np.stack(inputs)).to(self.device)
        dtype = next(self.model.parameters(), x).dtype
        if self.tap is not None:
            self.tap.begin()
        outs = self.model(x.to(dtype))
        dets = decode(self.model, outs, sizes, self.thresh, self.letterbox, self.tap)
        return [self.postprocess(d) for d in dets]

    @property
    def stateful(self) -> bool:
        """Whether the network carries state between forwards (recurrent layers)."""
        return bool(getattr(self.model, "stateful", False))

    def reset_state(self) -> None:
        if self.stateful:
            self.model.reset_state()

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[DetectionArray]:
        """Darknet images (3, H, W) float32 RGB in [0, 1] -> one DetectionArray each, in batches of `batch`
        (tiled: their tiles). The images are independent: a recurrent network starts each batch from zero state."""
        out: list[DetectionArray] = []
        for i in range(0, len(images), self.batch):
            chunk = images[i:i + self.batch]
            self.reset_state()
            out += self.run_images([(*self.inputs(im), (im.shape[2], im.shape[1])) for im in chunk])
        return out

    def stream(self, frames: Iterable[Frame], workers: int = 2, lookahead: Optional[int] = None) -> Iterator[Result]:
        """Detect on every frame, in order, yielding as batches finish. Unreadable frames come back with
        `error` set and the rest carry on. At most ~3 batches of images are in memory at once.

        A recurrent network (`stateful`) carries its state from one frame of a video to the next, so a video's
        frames run one per forward; it starts from zero state at each new source, and batches of image files
        (independent sources) each start from zero.
        """
        stateful = self.stateful
        last_video: Optional[str] = None

        def load(frame: Frame) -> tuple[Optional[np.ndarray], Optional[Inputs], Optional[str]]:
            try:
                bgr = frame.load()
                return bgr, self.inputs(self.to_image(bgr)), None
            except DarkcfgError as e:
                return None, None, str(e)
            except Exception as e:  # a decoder failure is still a one-line report for that frame
                return None, None, f"{frame.name}: cannot read: {type(e).__name__}: {e}"

        # frames read ahead of the batch being detected; 0 for live sources: the newest frame, not a backlog.
        # A tiled frame is many inputs: fewer frames ahead
        ahead = (max(2 * self.batch, workers * 2) if self.tiles is None else max(self.batch, workers)) \
            if lookahead is None else lookahead
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque[tuple[Frame, Future]] = deque()
            it = iter(frames)
            exhausted = False
            while True:
                while not exhausted and len(pending) < ahead + self.batch:
                    frame = next(it, None)
                    if frame is None:
                        exhausted = True
                        break
                    pending.append((frame, pool.submit(load, frame)))
                if not pending:
                    return
                group: list[tuple[Frame, np.ndarray, Inputs]] = []
                while pending and len(group) < self.batch:
                    if stateful and group and (pending[0][0].index is not None or group[-1][0].index is not None):
                        break  # a video frame goes alone: its state comes from the previous frame
                    frame, fut = pending.popleft()
                    bgr, x, err = fut.result()
                    if err is not None or bgr is None or x is None:
                        yield Result(frame, None, None, err or f"{frame.name}: cannot read")
                        continue
                    group.append((frame, bgr, x))
                if not group:
                    continue
                if stateful:
                    video = group[0][0].source.path if group[0][0].index is not None else None
                    if video is None or video != last_video:
                        self.reset_state()
                    last_video = video
                t0 = time.perf_counter()
                dets = self.run_images([(*g[2], (g[1].shape[1], g[1].shape[0])) for g in group])
                ms = (time.perf_counter() - t0) * 1000 / len(group)
                for (frame, bgr, _), d in zip(group, dets):
                    d.source, d.frame = frame.source.path, frame.index
                    yield Result(frame, bgr, d, None, ms)


def _as_image(det: Detector, item: ImageInput, bgr: bool) -> np.ndarray:
    """A path, an (H, W, 3) uint8 array or a (C, H, W) float32 Darknet image -> the network's image."""
    if isinstance(item, (str, Path)):
        return det.to_image(read_bgr(item))
    a = np.asarray(item)
    if a.ndim == 3 and a.dtype != np.uint8 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        return a.astype(np.float32)  # already a Darknet image (C, H, W) in [0, 1]
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"image array of shape {a.shape} and dtype {a.dtype}: expected (H, W, 3) uint8 "
                         "or (3, H, W) float32 in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return det.to_image(a if bgr else np.ascontiguousarray(a[:, :, ::-1]))


def detect(model: torch.nn.Module, images: Union[ImageInput, Sequence[ImageInput]], thresh: float = 0.25,
           nms: float = 0.45, names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None,
           batch: int = 8, bgr: bool = True, tiles: TilesArg = None) -> Union[list[Detection], list[list[Detection]]]:
    """Detect objects the way `darknet detector test` does.

    Args:
        model: a Darknet network (e.g. from `darkcfg.load`).
        images: a path, an (H, W, 3) uint8 array (OpenCV's BGR unless bgr=False), a (3, H, W) float32
            Darknet image, or a list of these.
        thresh, nms: thresholds (defaults .25, .45); letterbox: None = the cfg's letter_box.
        names: class names; default COCO's when the cfg has 80 classes, else the class ids.
        tiles: detect on tiles of each image, for small objects in large images: `"auto"` (tiles of the
            network's size), `"RxC"` (a grid), `"640px"` / `"640x480px"` (a tile size), or a
            `darkcfg.infer.tiles.Tiling` (overlap, full-image pass, seam merge); the tiles of `batch` images go
            through the network together, and each image's result is one list again.
    Returns:
        for one image a list of `Detection` (class_id, name, confidence, box (x1, y1, x2, y2) in pixels),
        one per (box, class) with confidence > thresh in the reference's `-out` order; for a list, a list of
        those lists.
    """
    single = isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)
                                                  and not (images.ndim == 3 and images.dtype == object))
    items = [images] if single else list(images)  # type: ignore[arg-type]
    det = Detector(model, names if names is not None else default_names(model), thresh, nms, letterbox, batch, tiles)
    results = [d.to_list(thresh) for d in det.detect_arrays([_as_image(det, i, bgr) for i in items])]
    return results[0] if single else results


Darknet.detector = detect  # `model.detect(...)` (the model stage does not import this one)


def stream(model: torch.nn.Module, source: Union[str, int], thresh: float = 0.25, nms: float = 0.45,
           names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None, keep_all: bool = False,
           retries: int = -1, max_frames: Optional[int] = None,
           tiles: TilesArg = None) -> Iterator[tuple[int, np.ndarray, list[Detection]]]:
    """`model.stream(source)`: detect frame by frame on any source `darkcfg detect` takes (an image, a folder, a
    video, a camera index such as 0, a stream URL), yielding (frame index, the frame as (H, W, 3) uint8 BGR, its
    `Detection` list) as each frame is done.

    A live source is read in a thread that keeps only the newest frame (`keep_all`: every frame), reconnecting
    after a drop (`retries`; negative: forever); `max_frames` stops after that many frames. Unreadable inputs
    raise their one-line error. Recurrent networks carry their state from frame to frame of one source. `tiles`:
    as in `detect`.
    """
    det = Detector(model, names if names is not None else default_names(model), thresh, nms, letterbox, 1, tiles)
    found, errors = expand_sources([str(source)])
    if errors:
        raise DarkcfgError(errors[0])
    live = LiveOptions(keep_all, retries, max_frames)
    k = 0
    for r in det.stream(iter_frames(found, live), lookahead=live.lookahead(found)):
        if r.error is not None or r.detections is None or r.image is None:
            raise DarkcfgError(r.error or f"{r.frame.name}: cannot read")
        yield (r.frame.index if r.frame.index is not None else k), r.image, r.detections.to_list(thresh)
        k += 1
        if max_frames is not None and k >= max_frames:
            return


Darknet.streamer = stream  # `model.stream(...)`
