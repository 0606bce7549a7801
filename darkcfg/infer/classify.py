"""The classifier of `darknet classifier predict` (classifier.c:predict_classifier), batched and streaming, and the
Python API (`model.classify`).

For each image, as the reference:
- load_image_color(path, 0, 0): 8-bit RGB / 255 as float32. darkcfg decodes with OpenCV (`darkcfg.data.images`);
  the reference's build without OpenCV decodes JPEG with stb_image, whose pixels differ by up to 3 levels.
- `resize_min` (image.c:resize_min): the shorter side becomes net.w (width, also for the height: the reference
  passes net.w alone), the other side `side * net.w / shorter` in integer division, with image.c:resize_image
  (the image itself when already that size).
- `crop_image` (image.c:crop_image) at ((rw - net.w) / 2, (rh - net.h) / 2) in C's integer division (toward
  zero), net.w x net.h; pixels outside the image repeat its edge (constrain_int). No letterbox, whatever the cfg.
- network_predict: the output of the last layer that is not [cost] (`Darknet.output_layers`).
- `hierarchy_predictions` (tree.c) when the network's last [softmax] has a `tree=` (only_leaves 0 here; the
  validation uses 1), then `top_k` (utils.c): the k highest, highest first, ties in index order.
- printed (`Classifier.lines`): `name: %f`, or with a tree `index, name: %f, parent: parent-name ` ("Root" for a
  root; the reference's trailing space kept), after `path: Predicted in %lf milli-seconds.`.

`top` is capped at the class count (classes= of the .data file, else the network's outputs) as the reference caps
it. The .data keys a classifier reads (`classifier_data`): classes, names (else labels), labels, top, valid,
leaves.
"""
from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch

from darkcfg.data.dataset import PathLike, open_data
from darkcfg.data.images import bgr_to_image, read_bgr
from darkcfg.data.names import read_names
from darkcfg.errors import DarkcfgError
from darkcfg.files import AtomicFile
from darkcfg.infer.preprocess import resize_image
from darkcfg.infer.sources import Frame, expand_sources, iter_frames
from darkcfg.model.network import Darknet

ImageInput = Union[str, Path, np.ndarray]
F32 = np.float32


class Prediction(NamedTuple):
    """One of an image's top classes: its index in the network's outputs, its name, its probability."""

    class_id: int
    name: str
    probability: float


# -- pre-processing (image.c) ---------------------------------------------------------------------------------------
def c_div(a: int, b: int) -> int:
    """C's integer division of ints: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def resize_min(im: np.ndarray, size: int) -> np.ndarray:
    """image.c:resize_min. im (C, H, W) -> (C, h, w) with min(h, w) = size, the other side `side * size / shorter`
    (integer division; the width is the shorter side only when strictly shorter); `im` itself when unchanged."""
    _, h, w = im.shape
    if w < h:
        h, w = (h * size) // w, size
    else:
        w, h = (w * size) // h, size
    if (w, h) == (im.shape[2], im.shape[1]):
        return im
    return resize_image(im, w, h)


def crop_image(im: np.ndarray, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """image.c:crop_image. im (C, H, W) -> (C, h, w) = im[:, dy:dy+h, dx:dx+w], rows and columns outside the image
    clamped to its edge."""
    _, ih, iw = im.shape
    rows = np.clip(np.arange(h) + dy, 0, ih - 1)  # (h,)
    cols = np.clip(np.arange(w) + dx, 0, iw - 1)  # (w,)
    return np.ascontiguousarray(im[:, rows][:, :, cols], dtype=np.float32)


def flip_image(im: np.ndarray) -> None:
    """image.c:flip_image: mirror (C, H, W) left-right, in place."""
    im[:] = im[:, :, ::-1].copy()


def classifier_input(im: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
    """predict_classifier's pre-processing: im (C, H, W) -> (C, net_h, net_w), resize_min to net_w then the
    centred crop_image."""
    resized = resize_min(im, net_w)
    return crop_image(resized, c_div(resized.shape[2] - net_w, 2), c_div(resized.shape[1] - net_h, 2), net_w, net_h)


# -- post-processing (utils.c, tree.c) -------------------------------------------------------------------------------
def top_k(a: np.ndarray, k: int) -> list[int]:
    """utils.c:top_k: indices of the k largest of a (N,), largest first, by the reference's insertion: each element
    in index order enters before the first strictly smaller one, and the one it displaces moves on down the same
    way. Equal values therefore do not simply keep index order (a displaced element passes its equals). Only the
    elements at or above the k-th largest value can change the result, so only they are walked (all of them when
    there is a NaN, which compares false)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    k = min(k, a.size)
    if k <= 0:
        return []
    if np.isnan(a).any():
        candidates: Iterable[int] = range(a.size)
    else:
        kth = np.partition(a, a.size - k)[a.size - k]  # the k-th largest value
        candidates = np.flatnonzero(a >= kth).tolist()
    v = a.tolist()  # exact as Python floats; comparisons as the C's
    index = [-1] * k
    for i in candidates:
        curr = i
        for j in range(k):
            if index[j] < 0 or v[curr] > v[index[j]]:
                curr, index[j] = index[j], curr
                if curr < 0:
                    break  # the rest of the list is empty (-1) too
    return index


def tree_leaves(parent: Sequence[int]) -> np.ndarray:
    """tree.c:read_tree's leaf flags: a node is a leaf unless it is some node's parent. (N,) bool."""
    leaf = np.ones(len(parent), dtype=bool)
    for p in parent:
        if p >= 0:
            leaf[p] = False
    return leaf


def hierarchy_predictions(p: np.ndarray, parent: Sequence[int], only_leaves: bool,
                          leaf: Optional[np.ndarray] = None) -> np.ndarray:
    """tree.c:hierarchy_predictions on a copy of p (N,) or (B, N): node j in order times its parent's value (so
    each node gets its ancestors' product when parents come first); with only_leaves, nodes that are not leaves
    (`leaf`, default `tree_leaves`) become 0. float32."""
    out = np.array(p, dtype=np.float32)
    flat = out.reshape(-1, out.shape[-1])  # (B, N), a view
    n = min(flat.shape[1], len(parent))
    j = 0
    while j < n:  # runs of nodes with the same parent at once when that parent comes before them
        par, k = parent[j], j
        while k < n and parent[k] == par:
            k += 1
        if 0 <= par < j:
            flat[:, j:k] *= flat[:, par:par + 1]
        elif par >= 0:
            for i in range(j, k):
                flat[:, i] *= flat[:, par]
        j = k
    if only_leaves:
        keep = tree_leaves(parent) if leaf is None else np.asarray(leaf, dtype=bool)
        flat[:, :n][:, ~keep[:n]] = 0
    return out


def network_tree(model: torch.nn.Module) -> Any:
    """The network's hierarchy (parser.c: net.hierarchy is the `tree=` of the last [softmax], or none): that
    layer's `tree` (with `parent`, a list of node parents, -1 for a root), else None."""
    soft = [m for m in model.layers if m.ltype == "softmax"]
    return getattr(soft[-1], "tree", None) if soft else None


def is_classifier_cfg(cfg: PathLike) -> bool:
    """Whether a .cfg (or a darkcfg .pt checkpoint) has no detection head: a classifier, as `detect`, `map` and
    `classify` tell them apart. Reads the sections only; nothing is built."""
    from darkcfg.model.cfg import parse_cfg_text, read_cfg
    from darkcfg.model.checkpoint import read_checkpoint
    from darkcfg.model.layers._registry import layer_class
    from darkcfg.model.loading import is_checkpoint

    if is_checkpoint(cfg):
        text, name = read_checkpoint(cfg)["cfg_text"], f"{cfg}:cfg"
    else:
        text, name = read_cfg(cfg)
    return not any(getattr(layer_class(s.type), "is_head", False) for s in parse_cfg_text(text, name)[1:])


# -- the .data file ---------------------------------------------------------------------------------------------------
@dataclass
class ClassifierData:
    """The keys of a .data file a classifier reads (classifier.c), paths as usable here: `names` (names=, else
    labels=: predict's labels), `labels` (labels=, else names=: what valid and train match image paths against),
    `classes`, `top` (None when absent), `valid` (the list, else train=), `leaves` (a tree's leaf names file)."""

    file: str
    classes: Optional[int] = None
    names: Optional[str] = None
    labels: Optional[str] = None
    top: Optional[int] = None
    valid: Optional[str] = None
    leaves: Optional[str] = None


def _beside(path: Optional[str], data_file: Path) -> Optional[str]:
    """A path from a .data file: as written (from the working directory, as the reference reads it), else
    beside the .data file when only there."""
    if path is None or Path(path).is_absolute() or Path(path).exists() or not (data_file.parent / path).exists():
        return path
    return str(data_file.parent / path)


def classifier_data(source: PathLike) -> ClassifierData:
    """Read a .data file (or a folder of images: names from its only .names file) for classification."""
    dc = open_data(source)
    extra: dict[str, str] = {}
    if not dc.folder:  # the keys open_data does not keep, read by the same rule (option_list.c:read_option)
        for raw in Path(source).read_text(encoding="utf-8-sig", errors="replace").splitlines():
            line = "".join(raw.split())
            if line and line[0] not in "#;" and "=" in line:
                key, value = line.split("=", 1)
                extra[key] = value
    p = Path(source)
    top = extra.get("top")
    try:
        top_n = int(top) if top is not None else None
    except ValueError:
        raise DarkcfgError(f"{p}: top={top}: expected an integer") from None
    labels = extra.get("labels")
    return ClassifierData(str(p), dc.classes, _beside(dc.names or labels, p), _beside(labels or dc.names, p), top_n,
                          _beside(dc.valid or dc.train, p), _beside(extra.get("leaves"), p))


# -- the classifier ---------------------------------------------------------------------------------------------------
@dataclass
class ClassifyResult:
    """What the pipeline gives for one frame: its top predictions, or the error that stopped it."""

    frame: Frame
    predictions: Optional[list[Prediction]]
    error: Optional[str] = None
    ms: float = 0.0  # this image's share of its batch's forward and top-k time


class Classifier:
    """A network plus the settings of `classifier predict`.

    Args:
        model: a Darknet network whose outputs are not detection heads (a one-line error otherwise).
        names: class names, one per output; shorter lists are padded with the indices.
        top: how many classes to report; capped at `classes`.
        batch: images per forward.
        classes: classes= of the .data file (default: the network's outputs); as the reference, it must equal the
            outputs when the cfg ends in [softmax] or [cost].
        tree: the hierarchy (`parent` list); default: the network's (`network_tree`).
    """

    def __init__(self, model: torch.nn.Module, names: Optional[Sequence[str]] = None, top: int = 5, batch: int = 1,
                 classes: Optional[int] = None, tree: Any = None) -> None:
        self.model = model
        outs = [model.layers[i] for i in model.output_layers]
        heads = [m for m in outs if getattr(m, "is_head", False)]
        if heads:
            raise DarkcfgError(f"{model.cfg_file}: layer {heads[0].index} ({heads[0].ltype}) is a detection head: "
                               "this is a detector, use darkcfg detect")
        self.outputs = outs[-1].out_shape.size
        last = model.layers[len(model.layers) - 1]
        if classes is not None and classes != self.outputs and last.ltype in ("softmax", "cost"):
            raise DarkcfgError(f"{model.cfg_file}: the network has {self.outputs} outputs (layer {outs[-1].index}, "
                               f"{outs[-1].ltype}), but classes={classes}")
        self.classes = classes if classes is not None else self.outputs
        if top < 1:
            raise ValueError(f"top={top}: expected a positive number of classes")
        self.top = min(top, self.classes, self.outputs)
        self.names = list(names) if names is not None else []
        self.names += [str(i) for i in range(len(self.names), self.outputs)]
        if batch < 1:
            raise ValueError(f"batch={batch}: expected a positive number of images per forward")
        self.batch = batch
        self.tree = tree if tree is not None else network_tree(model)
        self.parent: Optional[list[int]] = list(self.tree.parent) if self.tree is not None else None

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to_image(self, bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB in [0, 1]: load_image_color, 3 channels whatever the cfg."""
        return bgr_to_image(bgr)

    def prepare(self, im: np.ndarray) -> np.ndarray:
        """(3, H, W) Darknet image -> the network input (channels, net_h, net_w): `classifier_input`; a cfg with
        fewer channels gets the first planes, as network_predict reads the 3-channel crop's first floats."""
        net = self.model.net
        return classifier_input(im, net.width, net.height)[: net.channels]

    @torch.inference_mode()
    def forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """B network inputs (channels, net_h, net_w) -> the network's outputs (B, outputs) float32, as
        network_predict returns them (before any hierarchy)."""
        x = torch.from_numpy(np.stack(inputs)).to(self.device)
        dtype = next(self.model.parameters(), x).dtype
        out = self.model(x.to(dtype))[-1]
        return out.reshape(out.shape[0], -1).float().cpu().numpy()

    def probabilities(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """`forward`, then with a tree hierarchy_predictions(only_leaves=0) as predict_classifier. (B, outputs)."""
        if getattr(self.model, "stateful", False):
            self.model.reset_state()
        p = self.forward(inputs)
        return hierarchy_predictions(p, self.parent, False) if self.parent is not None else p

    def predictions(self, p: np.ndarray) -> list[Prediction]:
        """One image's probabilities (outputs,) -> its `top` classes (top_k), highest first."""
        return [Prediction(i, self.names[i], float(p[i])) for i in top_k(p, self.top)]

    def run_batch(self, inputs: Sequence[np.ndarray]) -> list[list[Prediction]]:
        """B network inputs -> B lists of `top` Predictions."""
        return [self.predictions(p) for p in self.probabilities(inputs)]

    def lines(self, predictions: Sequence[Prediction]) -> list[str]:
        """predict_classifier's stdout lines for one image's predictions (no trailing newlines)."""
        if self.parent is None:
            return [f"{p.name}: {p.probability:f}" for p in predictions]
        out = []
        for p in predictions:
            par = self.parent[p.class_id] if p.class_id < len(self.parent) else -1
            out.append(f"{p.class_id}, {p.name}: {p.probability:f}, parent: "
                       f"{self.names[par] if par >= 0 else 'Root'} ")
        return out

    def classify_arrays(self, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        """Darknet images (3, H, W) float32 RGB in [0, 1] -> one list of Predictions each, in batches."""
        out: list[list[Prediction]] = []
        for i in range(0, len(images), self.batch):
            out += self.run_batch([self.prepare(im) for im in images[i:i + self.batch]])
        return out

    def stream(self, frames: Iterable[Frame], workers: int = 2) -> Iterator[ClassifyResult]:
        """Classify every frame, in order, yielding as batches finish; frames are read and pre-processed in
        worker threads a few batches ahead. Unreadable frames come back with `error` set and the rest carry on."""

        def load(frame: Frame) -> tuple[Optional[np.ndarray], Optional[str]]:
            try:
                return self.prepare(self.to_image(frame.load())), None
            except DarkcfgError as e:
                return None, str(e)
            except Exception as e:  # a decoder failure is still a one-line report for that frame
                return None, f"{frame.name}: cannot read: {type(e).__name__}: {e}"

        ahead = max(2 * self.batch, 2 * workers)
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
                group: list[tuple[Frame, np.ndarray]] = []
                while pending and len(group) < self.batch:
                    frame, fut = pending.popleft()
                    x, err = fut.result()
                    if x is None:
                        yield ClassifyResult(frame, None, err or f"{frame.name}: cannot read")
                        continue
                    group.append((frame, x))
                if not group:
                    continue
                t0 = time.perf_counter()
                preds = self.run_batch([g[1] for g in group])
                ms = (time.perf_counter() - t0) * 1000 / len(group)
                for (frame, _), p in zip(group, preds):
                    yield ClassifyResult(frame, p, None, ms)


class JsonList:
    """`classify --json`: a JSON list of {filename, top: [{class_id, name, probability}]}, written entry by entry
    to a temporary file moved into place on close (a crash never leaves half a file)."""

    def __init__(self, path: PathLike) -> None:
        self._f = AtomicFile(path, text=True)
        self._f.file.write("[")  # type: ignore[union-attr]
        self.count = 0

    def add(self, filename: str, predictions: Sequence[Prediction]) -> None:
        top = [{"class_id": p.class_id, "name": p.name,
                "probability": p.probability if math.isfinite(p.probability) else None} for p in predictions]
        self._f.file.write(("," if self.count else "") + "\n" + json.dumps(  # type: ignore[union-attr]
            {"filename": filename, "top": top}, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        if not self._f.done:
            self._f.file.write("\n]\n")  # type: ignore[union-attr]
            self._f.commit()

    def __enter__(self) -> JsonList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_classifier(cfg: PathLike, weights: Optional[PathLike] = None, names: Optional[PathLike] = None,
                    data: Optional[PathLike] = None, top: Optional[int] = None, size: Any = None, batch: int = 1,
                    device: Optional[str] = None) -> Classifier:
    """A Classifier for `cfg` (.cfg or .pt) with `weights` (default: the .pt's own, else weights/<cfg>.weights),
    `names` (a file; default: names= of `data`, else the output indices), `data` (a .data file: classes=, names=,
    top=), `top` (default: top= of `data`, else the reference's 1), `size` overriding the cfg's, on `device`."""
    from darkcfg.infer.runtime import resolve_device
    from darkcfg.model.loading import load, load_trained_weights

    dc = classifier_data(data) if data is not None else None
    model = load(cfg, size=size)
    clf = Classifier(model, None, 1, batch, dc.classes if dc else None)  # refuses a detector before the weights
    names_file = names if names is not None else (dc.names if dc else None)
    if names_file is not None:
        listed = read_names(names_file)
        if len(listed) < clf.outputs:
            raise DarkcfgError(f"{names_file}: has {len(listed)} names, expected {clf.outputs} (the outputs of "
                               f"{model.cfg_file})")
        clf.names = listed[:clf.outputs]
    load_trained_weights(model, cfg, weights)
    model.to(resolve_device(device))
    k = top if top else (dc.top if dc and dc.top is not None else 1)
    if k < 1:
        raise DarkcfgError(f"top={k}: expected a positive number of classes")
    clf.top = min(k, clf.classes, clf.outputs)
    return clf


def _as_image(item: ImageInput, bgr: bool) -> np.ndarray:
    """A path, an (H, W, 3) uint8 array or a (3, H, W) float32 Darknet image -> (3, H, W) float32 RGB."""
    if isinstance(item, (str, Path)):
        return bgr_to_image(read_bgr(item))
    a = np.asarray(item)
    if a.ndim == 3 and a.dtype != np.uint8 and a.shape[0] == 3 and a.shape[2] != 3:
        return a.astype(np.float32)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"image array of shape {a.shape} and dtype {a.dtype}: expected (H, W, 3) uint8 "
                         "or (3, H, W) float32 in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return bgr_to_image(a if bgr else np.ascontiguousarray(a[:, :, ::-1]))


def classify(model: torch.nn.Module, images: Union[ImageInput, Sequence[ImageInput]], top: int = 5,
             names: Optional[Sequence[str]] = None, batch: int = 8,
             bgr: bool = True) -> Union[list[Prediction], list[list[Prediction]]]:
    """Classify images the way `darknet classifier predict` does.

    Args:
        model: a classifier network (e.g. from `darkcfg.load`).
        images: a path, an (H, W, 3) uint8 array (OpenCV's BGR unless bgr=False), a (3, H, W) float32 Darknet
            image, or a list of these.
        top: how many classes per image (capped at the network's outputs).
        names: class names (index = output); default the indices as strings.
    Returns:
        for one image a list of `top` `Prediction`s (class_id, name, probability), highest first; for a list,
        a list of those lists.
    """
    single = isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)
                                                  and images.dtype != object)
    items = [images] if single else list(images)  # type: ignore[arg-type]
    clf = Classifier(model, names, top, batch)
    results = clf.classify_arrays([_as_image(i, bgr) for i in items])
    return results[0] if single else results


Darknet.classifier = classify  # `model.classify(...)` (the model stage does not import this one)


def classify_sources(clf: Classifier, sources: Sequence[str]) -> tuple[Iterator[ClassifyResult], list[str]]:
    """The results over command-line SOURCES (files, folders, globs, list files, videos) and the one-line errors
    of arguments that gave nothing."""
    found, errors = expand_sources(sources)
    return clf.stream(iter_frames([s for s in found if s.kind != "live"])), errors + [
        f"{s.path}: live sources are not classified (give images, folders, lists or videos)"
        for s in found if s.kind == "live"]
