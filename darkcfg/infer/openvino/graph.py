"""A Darknet network as an OpenVINO model: traced by `openvino.convert_model` (`convert`) in the form OpenVINO runs
best (`graph_form`: each [yolo] head fused into its convolution, `fuse_heads`; [route] groups as slices, or as one
split in graphs to be quantized), and written as IR (`save_ir`). The runtime's cache and `export --format
openvino` both write through here; the cache's IR also gets a manifest of its files' digests (`ir_damage` checks
it), which an export, a file for other programs, does not get."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from darkcfg.infer.openvino.core import _import_openvino
from darkcfg.model.layers.route import Route
from darkcfg.model.network import Darknet


def convert(module: nn.Module, example: Tensor):  # noqa: ANN201 - openvino.Model
    """`module` traced on `example` (B, C, H, W) by openvino.convert_model, with a free batch size."""
    ov = _import_openvino()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on the input check: the shape is fixed by the cfg
        ov_model = ov.convert_model(module, example_input=example)
    ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([-1, *example.shape[1:]])})
    return ov_model


class _Done(nn.Module):
    """A head whose work the layer before it does (`fuse_heads`): passes that layer's output on."""

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x


def fuse_heads(net: Darknet) -> int:
    """In place: every detection head that has a fused form with the [convolutional] before it (`fused_with`:
    [yolo], [Gaussian_yolo]) becomes that form, the head itself a pass-through; the outputs stay equal. Only where
    nothing else reads the convolution's output. Returns the number of heads fused."""
    layers = net.layers
    read = {s for m in layers for s in m.sources}
    n = 0
    for i in range(1, len(layers)):
        fused = getattr(layers[i], "fused_with", None)
        if fused is None or i - 1 in read:
            continue
        layer = fused(layers[i - 1])
        if layer is not None:
            layers[i - 1], layers[i] = layer, _Done()
            n += 1
    return n


def graph_form(net: Darknet, quantized: bool) -> Darknet:
    """In place, and returned: `net` in the form OpenVINO gets (GRAPH_FORM, the runtime's and export's alike): the
    heads fused (`fuse_heads`); in a graph to be quantized, every [route] group taken as one piece of a channel split
    (`Route.as_split`: NNCF then quantizes the producer's output once), elsewhere as a slice."""
    fuse_heads(net)
    for m in net.layers:
        if isinstance(m, Route):
            m.as_split = quantized
    return net


MANIFEST_FORMAT = "darkcfg-ir-manifest-1"


def manifest_path(xml: Path) -> Path:
    """Where the manifest of the IR `xml` lies: `<stem>.manifest.json` beside it."""
    return xml.with_name(xml.stem + ".manifest.json")


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in 4 MiB pieces (`ir_damage` has the cost)."""
    h = hashlib.sha256()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def save_ir(ov_model, xml: Path, manifest: bool = False) -> Path:  # noqa: ANN001 - openvino.Model
    """Write `ov_model` as OpenVINO IR `xml` and its .bin (float32 weights kept): into a temporary folder beside it,
    then moved into place .bin first, so that a reader, who looks for the .xml, never finds half of one. The files
    are created as open() creates files (the umask's mode).

    manifest: also write `manifest_path(xml)`, the size and sha256 of both files, last (the runtime's cache: a
    reader trusts an IR only with it, `ir_damage`)."""
    ov = _import_openvino()
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=xml.parent, prefix=f".{xml.stem}-"))
    try:
        ov.save_model(ov_model, str(tmp / xml.name), compress_to_fp16=False)
        files = (xml.with_suffix(".bin"), xml)
        if manifest:
            entries = {f.name: {"bytes": (tmp / f.name).stat().st_size, "sha256": file_digest(tmp / f.name)}
                       for f in files}
            text = json.dumps({"format": MANIFEST_FORMAT, "files": entries}, indent=1)
            (tmp / manifest_path(xml).name).write_text(text + "\n", encoding="utf-8")
            files += (manifest_path(xml),)
        for f in files:
            os.replace(tmp / f.name, f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


def ir_damage(xml: Path) -> Optional[str]:
    """What is wrong with the IR `xml` that `save_ir(..., manifest=True)` wrote, against its manifest: None when the
    .xml and .bin have the size and sha256 it lists; else why not, in a few words ('no manifest', 'model.bin: sha256
    differs', ...). Hashing reads both files: yolov4-p5's IR at 896 x 896 (270 MiB) took 0.18 s on a 2-core Xeon with
    SHA-NI (0.24-0.30 s while the machine was busy), of a 0.8 s start from the cache (32 s without it); sha256 was the
    fastest of hashlib's there (blake2b 0.27 s, md5 0.36 s)."""
    try:
        text = manifest_path(xml).read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no {manifest_path(xml).name}"
    except (OSError, UnicodeDecodeError) as e:
        return f"{manifest_path(xml).name} unreadable: {type(e).__name__}"
    try:
        data = json.loads(text)
        entries = {name: (int(e["bytes"]), str(e["sha256"])) for name, e in data["files"].items()}
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(data.get("format"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"{manifest_path(xml).name} unreadable"
    for f in (xml.with_suffix(".bin"), xml):
        if f.name not in entries:
            return f"{manifest_path(xml).name} does not list {f.name}"
        size, digest = entries[f.name]
        try:
            actual = f.stat().st_size
            if actual != size:
                return f"{f.name}: {actual:,} bytes, expected {size:,}"
            if file_digest(f) != digest:
                return f"{f.name}: sha256 differs from the manifest's"
        except FileNotFoundError:
            return f"{f.name} is missing"
        except OSError as e:
            return f"{f.name} unreadable: {type(e).__name__}"
    return None
