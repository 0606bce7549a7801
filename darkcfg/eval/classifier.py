"""`darknet classifier valid` (classifier.c:validate_classifier_single) and its multi-crop variants `valid10`,
`validfull`, `validmulti`: top-1 and top-k accuracy over the .data file's valid list, printed as the reference
prints it after each image: `%d: top 1: %f, top %d: %f` (running means, float32).

- the label (`path_label`): the first class, in the labels file's order, whose name occurs anywhere in the path as
  the list writes it (strstr, classes= names at most); -1 (never right) when none does. So `.../dog/cat_1.jpg` is
  a cat if "cat" comes before "dog" in the labels file.
- `single` (valid): resize_min(im, net.w) and the centred net.w x net.h crop (`classifier_input`), the network,
  hierarchy_predictions(only_leaves=1) with a tree, top_k over the first classes= outputs.
- `10` (valid10): load_image_color(path, net.w + 32, net.h + 32) (resize_image), crops net.w x net.h at (-32, -32),
  (32, -32), (0, 0), (-32, 32), (32, 32) (edge-clamped: the reference's offsets, not centred), then the same five
  of the mirrored image; the ten outputs (each after hierarchy_predictions) summed in float32.
- `full` (validfull): resize_min(im, net.w) and the network resized to that image (resize_network), no crop.
- `multi` (validmulti): for each of the sizes 224, 288, 320, 352, 384 the network at resize_min(im, size) and at
  its mirror, summed; as the reference, hierarchy_predictions applies to the first of each pair only, and when
  resize_min returns the image itself (its short side already that size) the mirroring flips the image that the
  later sizes start from.
`leaves=` in the .data (single only, as the reference) replaces the tree's leaves by the nodes named in that file.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from darkcfg.data.dataset import DataError, image_list, read_list
from darkcfg.data.images import bgr_to_image, read_bgr
from darkcfg.data.names import read_names
from darkcfg.errors import DarkcfgError
from darkcfg.infer.classify import (
    Classifier,
    classifier_data,
    crop_image,
    flip_image,
    hierarchy_predictions,
    resize_min,
    top_k,
)
from darkcfg.infer.preprocess import resize_image

CROPS = ("single", "10", "full", "multi")
MULTI_SIZES = (224, 288, 320, 352, 384)  # validate_classifier_multi's scales
SHIFT = 32  # validate_classifier_10's shift
F32 = np.float32


def path_label(path: str, labels: Sequence[str]) -> int:
    """The class of an image by its path (strstr): the first label that occurs in `path`, else -1."""
    for j, name in enumerate(labels):
        if name in path:
            return j
    return -1


@dataclass
class ValidStep:
    """The running result after image `index` (from 0): its label and top classes, and the running means."""

    index: int
    path: str
    label: int
    top: list[int]
    top1: np.float32
    topk: np.float32
    k: int

    def line(self) -> str:
        """The reference's `%d: top 1: %f, top %d: %f`."""
        return f"{self.index}: top 1: {float(self.top1):f}, top {self.k}: {float(self.topk):f}"


def _read(path: str) -> np.ndarray:
    return bgr_to_image(read_bgr(path))


def _ten_crops(clf: Classifier, im: np.ndarray) -> np.ndarray:
    """validate_classifier_10's summed outputs for one image (already resized to net + SHIFT)."""
    w, h = clf.model.net.width, clf.model.net.height
    at = ((-SHIFT, -SHIFT), (SHIFT, -SHIFT), (0, 0), (-SHIFT, SHIFT), (SHIFT, SHIFT))
    crops = [crop_image(im, dx, dy, w, h) for dx, dy in at]
    flip_image(im)
    crops += [crop_image(im, dx, dy, w, h) for dx, dy in at]
    pred = np.zeros(clf.classes, dtype=F32)
    for p in _outputs(clf, [c[: clf.model.net.channels] for c in crops], True):  # one forward of the ten
        pred = (pred + p[: clf.classes]).astype(F32)  # axpy_cpu, one crop after the other
    return pred


def _outputs(clf: Classifier, inputs: Sequence[np.ndarray], hierarchy: bool,
             leaf: Optional[np.ndarray] = None) -> np.ndarray:
    p = clf.forward(inputs)
    if hierarchy and clf.parent is not None:
        p = hierarchy_predictions(p, clf.parent, True, leaf)
    return p


def _at_size(clf: Classifier, x: np.ndarray, hierarchy: bool) -> np.ndarray:
    """The network resized to x (C, h, w) (resize_network), its output for x."""
    clf.model.set_size(x.shape[2], x.shape[1])
    return _outputs(clf, [x[: clf.model.net.channels]], hierarchy)[0]


def _full(clf: Classifier, im: np.ndarray) -> np.ndarray:
    return _at_size(clf, resize_min(im, clf.model.net.width), True)


def _multi(clf: Classifier, im: np.ndarray) -> np.ndarray:
    pred = np.zeros(clf.classes, dtype=F32)
    for size in MULTI_SIZES:
        r = resize_min(im, size)  # `im` itself when unchanged: the flip below then flips im, as the reference
        pred = (pred + _at_size(clf, r, True)[: clf.classes]).astype(F32)
        flip_image(r)
        pred = (pred + _at_size(clf, r, False)[: clf.classes]).astype(F32)
    return pred


def _leaves(clf: Classifier, leaves: Optional[str]) -> Optional[np.ndarray]:
    """tree.c:change_leaves: the tree nodes named in the `leaves` file are its leaves (None: keep the tree's)."""
    if leaves is None or clf.tree is None:
        return None
    node_names = getattr(clf.tree, "name", None) or getattr(clf.tree, "names", None)
    if node_names is None:
        raise DarkcfgError(f"leaves={leaves}: this network's tree has no node names to match")
    wanted = set(read_list(leaves))
    return np.array([n in wanted for n in node_names], dtype=bool)


def validate_classifier(clf: Classifier, paths: Sequence[str], labels: Sequence[str], top: int,
                        crops: str = "single", written: Optional[Sequence[str]] = None,
                        leaves: Optional[np.ndarray] = None) -> Iterator[ValidStep]:
    """Run the validation over `paths` (images as read; `written`: the same paths as the list writes them, which
    the labels are matched against, default `paths`), yielding the running result after each image.

    `clf.classes` is the class count (classes=): labels are matched among its first names, and top_k runs over the
    first classes outputs. `top` is capped at classes. A network that `full` and `multi` resize is left at the
    last size used.
    """
    if crops not in CROPS:
        raise ValueError(f"crops={crops!r}: expected one of {', '.join(CROPS)}")
    k = min(top, clf.classes)
    names = list(labels)[: clf.classes]
    written = list(written) if written is not None else list(paths)
    step = clf.batch if crops == "single" else 1  # the variants resize the network per image: one at a time
    acc, acc_k = F32(0), F32(0)
    for start in range(0, len(paths), step):
        chunk = range(start, min(start + step, len(paths)))
        if crops == "single":
            preds = _outputs(clf, [clf.prepare(_read(paths[j])) for j in chunk], True, leaves)[:, : clf.classes]
        elif crops == "10":
            net = clf.model.net
            im = _read(paths[start])
            if im.shape[1:] != (net.height + SHIFT, net.width + SHIFT):  # load_image_color(path, w + 32, h + 32)
                im = resize_image(im, net.width + SHIFT, net.height + SHIFT)
            preds = _ten_crops(clf, im)[None]
        else:
            preds = (_full if crops == "full" else _multi)(clf, _read(paths[start]))[None, : clf.classes]
        for i, p in zip(chunk, preds):
            label = path_label(written[i], names)
            best = top_k(p, k)
            acc = F32(acc + F32(best[0] == label))
            acc_k = F32(acc_k + F32(sum(b == label for b in best)))
            yield ValidStep(i, written[i], label, best, F32(acc / F32(i + 1)), F32(acc_k / F32(i + 1)), k)


@dataclass
class ClassifierValid:
    """What `run_classifier_valid` sets up: the steps to iterate, and how many images and classes."""

    steps: Iterator[ValidStep]
    images: int
    classes: int
    top: int


def run_classifier_valid(data: str, model: Any, crops: str = "single", batch: int = 1) -> ClassifierValid:
    """`classifier valid DATA`: the labels (labels=, else names=), valid list (else train=), classes and top= (else
    1) of DATA (a .data file, or a folder of images whose paths hold their class names and one .names file)."""
    dc = classifier_data(data)
    if dc.labels is None:
        raise DataError(f"{data}: no labels= (or names=) file: the class names that image paths are matched against")
    if dc.valid is None:
        raise DataError(f"{data}: no 'valid' (or 'train') list given")
    labels = read_names(dc.labels)
    clf = Classifier(model, labels, 1, batch, dc.classes)
    if len(labels) < clf.classes:
        raise DataError(f"{dc.labels}: has {len(labels)} names, expected {clf.classes} (classes=)")
    paths = image_list(dc.valid)
    written = None if Path(dc.valid).is_dir() else read_list(dc.valid)  # the paths as the list writes them
    if not paths:
        raise DataError(f"{dc.valid}: no images to validate on")
    top = dc.top if dc.top is not None else 1
    if top < 1:
        raise DataError(f"{data}: top={top}: expected a positive number of classes")
    leaf = _leaves(clf, dc.leaves) if crops == "single" else None
    steps = validate_classifier(clf, paths, labels, top, crops, written, leaf)
    return ClassifierValid(steps, len(paths), clf.classes, min(top, clf.classes))

