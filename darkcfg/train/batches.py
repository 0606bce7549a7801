"""Training batches: images and truths in the reference's layout, made in worker processes.

`TrainSampler` decides, per iteration, which images and which network size (multi-scale `random` of the
last [yolo]: a new size every 10 iterations, detector.c:train_detector); `TrainDataset` loads and augments
one image for a (index, width, height, seed) request; `collate` stacks a batch. Every random draw comes
from a seed derived from (--seed, iteration, slot), so a run is reproducible and a resumed run draws what
the uninterrupted one would have drawn.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
import torch

from darkcfg.data.dataset import DataError, label_file, read_labels
from darkcfg.data.images import decodable
from darkcfg.train.augment import AugmentConfig, augment_one, filter_truths, mosaic, rand_scale


@dataclass
class Item:
    """One request: image `index` at network size `width` x `height`, drawing from `seed`."""

    index: int
    width: int
    height: int
    seed: int


@dataclass
class Sample:
    image: torch.Tensor  # (C, h, w) float32 in [0, 1], RGB
    truths: np.ndarray  # (N, 6) x, y, w, h, id, track
    skipped: list[str] = field(default_factory=list)  # unreadable images replaced by others
    bad_class: int = 0  # label rows with an id >= classes (dropped)
    out_of_range: int = 0  # label rows skipped: a value outside [0, 1] or an empty box
    missing_labels: int = 0
    label_issues: list[str] = field(default_factory=list)  # "file:line: ..." of each skipped row


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class TrainDataset(torch.utils.data.Dataset):
    """Loads and augments training images; `dataset[Item(...)]` -> Sample."""

    def __init__(self, paths: list[str], cfg: AugmentConfig, augment: bool = True) -> None:
        if not paths:
            raise ValueError("no training images")
        self.paths, self.cfg, self.augment = paths, cfg, augment

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int, skipped: list[str], issues: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
        for k in range(len(self.paths)):  # an unreadable image is replaced by the next readable one
            path = self.paths[(index + k) % len(self.paths)]
            data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
            img = cv2.imdecode(data, cv2.IMREAD_COLOR if self.cfg.channels != 1 else cv2.IMREAD_GRAYSCALE) \
                if data is not None and data.size and decodable(data, path) else None
            if img is None:
                skipped.append(path)
                continue
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img[:, :, None]
            lp = label_file(path)
            return img, read_labels(lp, issues=issues), int(not os.path.isfile(lp))
        raise DataError(f"none of the {len(self.paths)} training images can be read (the first: {self.paths[0]})")

    def __getitem__(self, item: Item) -> Sample:  # type: ignore[override]
        rng = np.random.default_rng(item.seed)
        skipped: list[str] = []
        issues: list[str] = []
        size = (item.width, item.height)
        cfg = self.cfg if self.augment else self.cfg.off()
        img, labels, missing = self._read(item.index, skipped, issues)
        if cfg.mosaic and rng.integers(2):  # per sample; the reference: per loader chunk, ~half of them
            parts = [(img, labels)]
            for _ in range(3):
                im2, lb2, m2 = self._read(int(rng.integers(len(self.paths))), skipped, issues)
                parts.append((im2, lb2))
                missing += m2
            out, boxes = mosaic(parts, cfg, rng, size)
        else:
            out, boxes = augment_one(img, labels, cfg, rng, size)
        rng.shuffle(boxes)  # randomize_boxes, then keep at most max_boxes
        boxes, bad = filter_truths(boxes, cfg.classes, item.width, item.height)
        boxes = boxes[: cfg.max_boxes]
        truths = np.zeros((len(boxes), 6), np.float32)
        truths[:, :4] = boxes[:, 1:5]
        truths[:, 4] = boxes[:, 0]
        image = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float().div_(255)
        return Sample(image, truths, skipped, bad, len(issues), missing, issues)


def collate(samples: list[Sample]) -> dict:
    """Stack a batch: images (B, C, h, w); truths (B, T, 6) zero-padded (a row with x == 0 ends a list)."""
    t = max(1, max(len(s.truths) for s in samples))
    truths = torch.zeros(len(samples), t, 6)
    for k, s in enumerate(samples):
        if len(s.truths):
            truths[k, : len(s.truths)] = torch.from_numpy(s.truths)
    return {
        "images": torch.stack([s.image for s in samples]),
        "truths": truths,
        "skipped": [p for s in samples for p in s.skipped],
        "bad_class": sum(s.bad_class for s in samples),
        "out_of_range": sum(s.out_of_range for s in samples),
        "missing_labels": sum(s.missing_labels for s in samples),
        "label_issues": [m for s in samples for m in s.label_issues],
    }


def multiscale_size(init: tuple[int, int], random_coef: float, resize_step: float, iteration: int,
                    max_batches: int, seed: int) -> tuple[int, int]:
    """The network size for `iteration` (1-based) when the last [yolo] has `random`: redrawn every 10
    iterations from rand_scale(c) (c = 1.4 for random=1), rounded to resize_step; the largest size on the
    first draw and in the last 100 iterations."""
    if not random_coef:
        return init
    c = 1.4 if random_coef == 1 else random_coef
    step = int(resize_step) or 32
    block = (iteration - 1) // 10
    rng = np.random.default_rng(_seed(seed, 0x5CA1E, block))
    r = rand_scale(rng, c)
    dims = []
    for d in init:
        dim = int(math.floor(r * d / step + 1 + 0.5)) * step
        if block == 0 or iteration >= max_batches - 100:
            dim = int(math.floor(c * d / step + 1 + 0.5)) * step
        dims.append(dim)
    if r < 1 and (dims[0] > init[0] or dims[1] > init[1]) and block != 0 and iteration < max_batches - 100:
        dims = list(init)
    return max(step, dims[0]), max(step, dims[1])


@dataclass
class Sequences:
    """Consecutive frames for recurrent training ([net] track=1, data.c:get_sequential_paths): each forward of
    `mini_batch` * `time_steps` images holds `mini_batch` sequences that start at random list positions and
    advance by a random speed in 1..`augment_speed` images per step, in step-major order (image i is step
    i // mini_batch of sequence i % mini_batch), as the recurrent layers read them. The frames of a sequence
    share one augmentation draw (the reference augments a tracking batch once)."""

    mini_batch: int
    time_steps: int
    augment_speed: int


class TrainSampler(torch.utils.data.Sampler):
    """Yields, for each iteration from `start` + 1 on, the list of Items of that iteration (this rank's
    share of batch*subdivisions*world images), visiting the images in a fresh permutation each epoch, or as
    `sequences` of consecutive images."""

    def __init__(self, n_images: int, per_iteration: int, init_size: tuple[int, int], random_coef: float,
                 resize_step: float, max_batches: int, seed: int, start: int = 0, rank: int = 0,
                 world: int = 1, end: Optional[int] = None, sequences: Optional[Sequences] = None,
                 sizes: Optional[Callable[[int], tuple[int, int]]] = None) -> None:
        self.sequences, self.sizes = sequences, sizes
        self.n, self.per, self.init = n_images, per_iteration, init_size
        self.random_coef, self.step, self.max_batches = random_coef, resize_step, max_batches
        self.seed, self.start, self.rank, self.world = seed, start, rank, world
        self.end = end if end is not None else max_batches
        self._perms: dict[int, np.ndarray] = {}

    def _image(self, position: int) -> int:
        epoch, k = divmod(position, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng(_seed(self.seed, 0xE90C, epoch)).permutation(self.n)}
        return int(self._perms[epoch][k])

    def size_at(self, iteration: int) -> tuple[int, int]:
        """The network size of `iteration`: `sizes(iteration)` when given (a recipe's multi-scale), else the
        reference's (`multiscale_size`)."""
        if self.sizes is not None:
            return self.sizes(iteration)
        return multiscale_size(self.init, self.random_coef, self.step, iteration, self.max_batches, self.seed)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def _sequential(self, it: int, w: int, h: int) -> list[Item]:
        q = self.sequences
        assert q is not None
        chunk = q.mini_batch * q.time_steps
        items = []
        for c in range(self.per // chunk):
            rng = np.random.default_rng(_seed(self.seed, 0x5E9, it, self.rank, c))
            speed = int(rng.integers(1, max(1, q.augment_speed) + 1))
            starts = rng.integers(0, self.n, q.mini_batch)
            for k in range(chunk):
                s, step = k % q.mini_batch, k // q.mini_batch
                items.append(Item(int((starts[s] + step * speed) % self.n), w, h,
                                  _seed(self.seed, it, self.rank, c * q.mini_batch + s)))
        return items

    def __iter__(self) -> Iterator[list[Item]]:
        for it in range(self.start + 1, self.end + 1):
            w, h = self.size_at(it)
            if self.sequences is not None:
                yield self._sequential(it, w, h)
                continue
            base = ((it - 1) * self.world + self.rank) * self.per
            yield [Item(self._image(base + k), w, h, _seed(self.seed, it, self.rank, k)) for k in range(self.per)]
