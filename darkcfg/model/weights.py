"""Darknet .weights I/O (parser.c:load_weights_upto / save_weights_upto).

Header: int32 major, minor, revision, then `seen` as uint64 when major*10+minor >= 2, else uint32.
Body: little-endian float32 in layer order, each layer's tensors in the reference's order
(`DarknetLayer.darknet_blobs`). The reader and the writer walk the same list, so load -> save is
byte-identical. Unlike the reference, a file that ends inside a layer or has bytes left over is an
error naming the layer and the byte counts, unless a partial load was asked for.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Optional, Union

import numpy as np
import torch

from darkcfg.errors import WeightsError
from darkcfg.files import atomic_write

if TYPE_CHECKING:
    from darkcfg.model.network import Darknet


@dataclass
class WeightsHeader:
    """The .weights header: version and `seen` (images seen in training); `seen_bytes` is 4 or 8."""

    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0
    seen_bytes: int = 8

    @property
    def transpose(self) -> bool:
        return self.major > 1000 or self.minor > 1000


@dataclass
class LoadReport:
    """What a load found: layers with weights loaded, of how many the network has, and the byte counts."""

    layers_loaded: int
    layers_with_weights: int
    upto: int  # index after the last layer whose weights the file held
    bytes_read: int
    bytes_total: int

    @property
    def complete(self) -> bool:
        return self.layers_loaded == self.layers_with_weights and self.bytes_read == self.bytes_total


def read_header(data: bytes, path: str) -> tuple[WeightsHeader, int]:
    if len(data) < 16:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a .weights header (expected >= 16)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    if major * 10 + minor >= 2:
        if len(data) < 20:
            raise WeightsError(f"{path}: {len(data)} bytes is too short for a version {major}.{minor} header (20)")
        (seen,) = struct.unpack_from("<Q", data, 12)
        return WeightsHeader(major, minor, revision, seen, 8), 20
    (seen,) = struct.unpack_from("<I", data, 12)
    return WeightsHeader(major, minor, revision, seen, 4), 16


def load_weights(model: Darknet, path: Union[str, Path], partial: bool = False,
                 upto: Optional[int] = None) -> LoadReport:
    """Load a .weights file into `model` in place.

    Args:
        partial: accept a file that ends inside a layer (that layer is left as it was) or has bytes
            left over. A file that ends exactly after some layer (a prefix such as yolov4-tiny.conv.29)
            always loads; the report says how many layers it held.
        upto: read only layers < upto (the rest of the file is ignored), as the reference's `partial`.
    """
    p = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise WeightsError(f"{p}: cannot read weights file ({e.strerror or e})") from None
    header, offset = read_header(data, p)
    total = len(data)
    layers = list(model.layers)[: upto if upto is not None else len(model.layers)]
    with_weights = [i for i, m in enumerate(model.layers) if m.darknet_blobs() and not m.dontload]
    pos, loaded, last = offset, 0, 0
    for i, layer in enumerate(layers):
        if layer.dontload:
            continue
        blobs = [b for b in layer.darknet_blobs(header.transpose) if not b.skip_load]
        need = 4 * sum(b.tensor.numel() for b in blobs)
        if need == 0:
            continue
        if pos == total:  # a prefix file ends at a layer boundary
            break
        if pos + need > total:
            if partial:
                break
            raise WeightsError(
                f"{p}: file ends inside layer {i} [{layer.ltype}]: it needs {need} bytes, {total - pos} left "
                f"(file has {total} bytes; use a partial load to keep layers 0..{i - 1})"
            )
        for b in blobs:
            n = b.tensor.numel()
            arr = np.frombuffer(data, dtype="<f4", count=n, offset=pos)
            if b.transposed is not None:
                rows, cols = b.transposed
                arr = arr.reshape(cols, rows).T
            with torch.no_grad():
                b.tensor.copy_(torch.from_numpy(np.array(arr, dtype=np.float32)).view_as(b.tensor))
            pos += 4 * n
        loaded += 1
        last = i + 1
    if upto is None and pos < total and not partial:
        raise WeightsError(
            f"{p}: {total - pos} bytes left over after the last layer ({len(model.layers) - 1}); the file has "
            f"{total} bytes, the cfg needs {pos}: wrong cfg for these weights?"
        )
    model.header = header
    model.loaded_upto = last
    return LoadReport(loaded, len([i for i in with_weights if upto is None or i < upto]), last, pos, total)


def write_weights(model: Darknet, fh: BinaryIO, upto: Optional[int] = None,
                  header: Optional[WeightsHeader] = None) -> int:
    """Write header + layers < upto to an open binary file; returns the bytes written."""
    h = header or model.header
    out = [struct.pack("<3i", h.major, h.minor, h.revision)]
    out.append(struct.pack("<Q" if h.seen_bytes == 8 else "<I", h.seen))
    for layer in list(model.layers)[: upto if upto is not None else len(model.layers)]:
        for b in layer.darknet_blobs(h.transpose):
            arr = b.tensor.detach().to("cpu", torch.float32).numpy()
            if b.transposed is not None:
                rows, cols = b.transposed
                arr = arr.reshape(rows, cols).T
            out.append(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    n = 0
    for chunk in out:
        fh.write(chunk)
        n += len(chunk)
    return n


def save_weights(model: Darknet, path: Union[str, Path], upto: Optional[int] = None,
                 header: Optional[WeightsHeader] = None) -> None:
    """Save layers < upto (default: all) as a .weights file, atomically."""
    atomic_write(path, lambda fh: write_weights(model, fh, upto, header))
