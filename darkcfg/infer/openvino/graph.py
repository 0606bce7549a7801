"""A Darknet network as an OpenVINO model: traced by `openvino.convert_model` (`convert`) in the form OpenVINO runs
best (`graph_form`: each [yolo] head fused into its convolution, `fuse_heads`; [route] groups as slices, or as one
split in graphs to be quantized), and written as IR (`save_ir`). The runtime's cache and `export --format
openvino` both write through here."""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

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


def save_ir(ov_model, xml: Path) -> Path:  # noqa: ANN001 - openvino.Model
    """Write `ov_model` as OpenVINO IR `xml` and its .bin (float32 weights kept): into a temporary folder beside it,
    then moved into place .bin first, so that a reader, who looks for the .xml, never finds half of one. The files
    are created as open() creates files (the umask's mode)."""
    ov = _import_openvino()
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=xml.parent, prefix=f".{xml.stem}-"))
    try:
        ov.save_model(ov_model, str(tmp / xml.name), compress_to_fp16=False)
        for f in (xml.with_suffix(".bin"), xml):
            os.replace(tmp / f.name, f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml
