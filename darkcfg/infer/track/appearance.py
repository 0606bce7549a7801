"""Per-box appearance vectors (embeddings) taken from the network's own layers during detection.

Two sources:
- "layer": the cfg's [yolo] `embedding_layer` (yolov4-tiny_contrastive.cfg), as the reference fills
  `detection.embeddings` (yolo_layer.c:get_yolo_detections -> blas.c:get_embedding): the embedding layer's
  output (B, n x E, H, W) on the head's grid holds, for anchor slot s at cell (row, col), the E values of
  channels s*E .. s*E + E - 1 at (row, col). A head without an embedding layer gives zeros (make_network_boxes
  allocates them zeroed). The reference's GPU path copies the embedding layer's output in forward_yolo_layer_gpu;
  its CPU path never does (CPU embeddings stay 0): this follows the GPU path.
- "features": for any cfg, the feature map that feeds each head's last [convolutional] (the layer two before
  the head), averaged inside the box (the cells its box in network-input coordinates covers), each head's
  part scaled to unit length and the parts concatenated: no extra model.

`EmbeddingTap(model, mode)` hooks the layers it needs (torch forward hooks: a network compiled with
torch.compile or replayed as a CUDA graph does not run them, and says so in one line).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from darkcfg.errors import DarkcfgError
from darkcfg.model.heads import head_layers

EMBEDDING_MODES = ("auto", "layer", "features")


def has_embedding_layer(model: torch.nn.Module) -> bool:
    """Whether any head of `model` names an `embedding_layer` (the darknet tracker's cfgs)."""
    return any(getattr(getattr(h, "params", None), "embedding_layer", None) is not None for h in head_layers(model))


def cell_embeddings(emb: Tensor, idx: np.ndarray, n: int) -> np.ndarray:
    """get_embedding for candidates: emb (n*E, H, W) one image's embedding-layer output; idx (N,) flat candidate
    indices (cell * n + slot, decode's order) -> (N, E) float32."""
    c, _, w = emb.shape
    e = c // n
    cell, slot = np.divmod(np.asarray(idx, np.int64), n)
    row, col = np.divmod(cell, w)
    planes = emb[: n * e].reshape(n, e, emb.shape[1], w)  # (n, E, H, W)
    s, r, q = (torch.as_tensor(v, device=emb.device) for v in (slot, row, col))
    return planes[s, :, r, q].float().cpu().numpy().reshape(len(idx), e)  # (N, E)


def pooled_features(fmap: Tensor, boxes: np.ndarray) -> np.ndarray:
    """fmap (C, H, W) one image's feature map; boxes (N, 4) (cx, cy, w, h) relative to the network input ->
    (N, C) float32: the mean of the cells each box covers (at least its centre's cell), scaled to unit length.

    A loop over the boxes, each summing its own cells: for the few boxes a frame keeps this is cheaper than a
    summed-area table of the whole map, and it runs no multi-threaded kernels."""
    c, h, w = fmap.shape
    if not len(boxes):
        return np.zeros((0, c), np.float32)
    fm = fmap.detach().float().cpu().numpy()  # (C, H, W), a view where it can be
    b = np.nan_to_num(np.asarray(boxes, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    cx = np.clip((b[:, 0] * w).astype(np.int64), 0, w - 1)
    cy = np.clip((b[:, 1] * h).astype(np.int64), 0, h - 1)
    x0 = np.clip(np.floor((b[:, 0] - b[:, 2] / 2) * w), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil((b[:, 0] + b[:, 2] / 2) * w), 0, w).astype(np.int64)
    y0 = np.clip(np.floor((b[:, 1] - b[:, 3] / 2) * h), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil((b[:, 1] + b[:, 3] / 2) * h), 0, h).astype(np.int64)
    empty = (x1 <= x0) | (y1 <= y0)
    x0, x1 = np.where(empty, cx, x0), np.where(empty, cx + 1, x1)
    y0, y1 = np.where(empty, cy, y0), np.where(empty, cy + 1, y1)
    out = np.empty((len(b), c), np.float32)
    for i in range(len(b)):
        out[i] = fm[:, y0[i]:y1[i], x0[i]:x1[i]].sum(axis=(1, 2), dtype=np.float64)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, n, out=np.zeros_like(out), where=n > 0)


class EmbeddingTap:
    """Hooks on the layers a run needs for its boxes' embeddings (module docstring).

    mode: "layer" (the cfg's embedding_layer; an error where no head has one), "features" (the maps feeding the
    heads), "auto" (layer where the cfg has one, else features). After each forward, `embed` gives a head's
    candidates' embeddings; `close` removes the hooks.
    """

    def __init__(self, model: torch.nn.Module, mode: str = "auto") -> None:
        if mode not in EMBEDDING_MODES:
            raise DarkcfgError(f"embeddings={mode!r}: expected one of {', '.join(EMBEDDING_MODES)}")
        heads = head_layers(model)
        cfg = getattr(model, "cfg_file", "the network")
        if mode == "auto":
            mode = "layer" if has_embedding_layer(model) else "features"
        self.mode = mode
        self.sources: list[Optional[int]] = []  # per head: the layer whose output it reads
        if mode == "layer":
            self.sources = [getattr(h.params, "embedding_layer", None) if hasattr(h, "params") else None for h in heads]
            if all(s is None for s in self.sources):
                raise DarkcfgError(f"{cfg}: no [yolo] layer has embedding_layer: the cfg gives no embeddings "
                                   "(use the feature-map appearance, or a cfg such as yolov4-tiny_contrastive.cfg)")
            sizes = {model.layers[s].out_shape.c // h.n for h, s in zip(heads, self.sources) if s is not None}
            self.size = max(sizes)
        else:
            for h, i in zip(heads, model.output_layers):
                ok = i >= 2 and getattr(model.layers[i - 1], "ltype", "") == "conv" \
                    and tuple(model.layers[i - 2].out_shape)[1:] == tuple(h.in_shape)[1:]
                self.sources.append(i - 2 if ok else None)
            if all(s is None for s in self.sources):
                raise DarkcfgError(f"{cfg}: no head is fed by a [convolutional] on its own grid: no feature map to "
                                   "take appearance from")
            self.size = sum(model.layers[s].out_shape.c for s in self.sources if s is not None)
        self.maps: dict[int, Tensor] = {}
        self._hooks = [model.layers[s].register_forward_hook(self._keep(s)) for s in set(self.sources)
                       if s is not None]
        self.cfg = cfg

    def _keep(self, index: int):  # noqa: ANN202 - a forward hook
        def hook(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
            self.maps[index] = output.detach()

        return hook

    def begin(self) -> None:
        """Before a forward: forget the last one's maps."""
        self.maps.clear()

    def check(self) -> None:
        """After a forward: every hooked layer ran (a compiled or graph-replayed network runs no hooks)."""
        missing = [s for s in set(self.sources) if s is not None and s not in self.maps]
        if missing:
            raise DarkcfgError(f"{self.cfg}: layer {missing[0]}'s output was not seen: embeddings for tracking need "
                               "the PyTorch runtime without --compile or CUDA graphs")

    def embed(self, head: int, image: int, idx: np.ndarray, n: int, boxes: np.ndarray,
              live: Optional[np.ndarray] = None) -> np.ndarray:
        """Embeddings (N, size) float32 of one head's candidates in one image of the batch: idx (N,) their flat
        indices (cell * n + slot), boxes (N, 4) relative to the network input (features mode); live (N,) bool:
        the candidates with a class probability above the threshold (features mode pools only those: the others
        are never shown nor tracked, and get zeros)."""
        if self.mode == "layer":
            s = self.sources[head]
            if s is None:
                return np.zeros((len(idx), self.size), np.float32)
            return cell_embeddings(self.maps[s][image], idx, n)
        out = np.zeros((len(idx), self.size), np.float32)
        rows = np.arange(len(idx)) if live is None else np.flatnonzero(live)
        if len(rows):
            parts = [pooled_features(self.maps[s][image], boxes[rows]) for s in self.sources if s is not None]
            out[rows] = np.concatenate(parts, 1) / np.float32(np.sqrt(len(parts)))
        return out

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
