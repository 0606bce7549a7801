"""`darkcfg export`: a Darknet network as an ONNX, TorchScript or OpenVINO IR file that runs without darkcfg.

The input is `images` (batch, channels, height, width) at the cfg's size, RGB in [0, 1] as darkcfg's
pre-processing gives it; the outputs are those of `ExportModel` (export/graph.py). With `dynamic_batch` the
batch size is free. The file is written atomically (OpenVINO: the .bin, then the .xml that names it).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from darkcfg.errors import DarkcfgError
from darkcfg.export.graph import ExportModel
from darkcfg.export.nms import nms_onnx
from darkcfg.files import atomic_write
from darkcfg.model.network import Darknet

FORMATS = ("onnx", "torchscript", "openvino")


@dataclass
class Exported:
    """What `export_files` wrote: the file, whether it is quantized, and the input image size it takes."""

    path: Path
    int8: bool
    channels: int
    height: int
    width: int


def export_files(cfg: Union[str, Path], weights: Optional[Union[str, Path]] = None, fmt: str = "onnx",
                 out: Optional[Union[str, Path]] = None, size: Optional[tuple[int, int]] = None,
                 dynamic_batch: bool = False, with_decode: bool = False, with_nms: bool = False,
                 thresh: float = 0.25, nms: float = 0.45, batch: int = 1,
                 calibration: Optional[str] = None) -> Exported:
    """`darkcfg export`: the trained network of `cfg` (`load_trained`: `weights`, default the .pt's own or
    weights/<cfg name>.weights) written by `export` to `out` (default <cfg name>.onnx, .torchscript.pt or .xml
    beside the weights); `calibration` (a .data file, an image list or a folder) quantizes an OpenVINO export.
    An exporter's failure is one line."""
    from darkcfg.model.loading import load_trained

    model = load_trained(cfg, weights, size)
    stem = Path(cfg).name.split(".")[0]
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "openvino": ".xml"}.get(fmt, "")
    dest = Path(out) if out else Path(weights or cfg).with_name(stem + suffix)
    images: Sequence[str] = ()
    if calibration:
        from darkcfg.infer.openvino import calibration_images

        images = calibration_images(calibration)
    try:
        dest = export(model, dest, fmt, dynamic_batch, with_decode, with_nms, thresh, nms, batch, images)
    except (RuntimeError, ValueError) as e:
        raise DarkcfgError(str(e).splitlines()[0]) from None
    return Exported(dest, bool(images), model.net.channels, model.net.height, model.net.width)


def output_names(m: ExportModel, heads: int) -> list[str]:
    if m.with_nms:
        return ["boxes", "scores", "detections"]
    if m.with_decode:
        return ["boxes", "scores"]
    return [f"head{k}" for k in range(heads)]


def export(model: Darknet, path: Union[str, Path], fmt: str = "onnx", dynamic_batch: bool = False,
           with_decode: bool = False, with_nms: bool = False, thresh: float = 0.25, nms: float = 0.45,
           batch: int = 1, calibration: Sequence[str] = (), letterbox: Optional[bool] = None) -> Path:
    """Write `model` (on the CPU, float32) to `path` as ONNX, TorchScript or OpenVINO IR (path: the .xml, its .bin
    beside it); returns the path.

    The input is `images` (batch, channels, height, width) at the cfg's size, RGB in [0, 1] as darkcfg's
    pre-processing gives it. The file is written atomically. OpenVINO with `calibration` images: int8, quantized
    by NNCF on them as `--runtime openvino --precision int8` is (pre-processed with `letterbox`, default the cfg's).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    stateful = [m for m in model.layers if m.stateful]
    if stateful:  # a traced graph would run every frame from zero state: a silently different network
        raise DarkcfgError(f"{model.cfg_file}: layer {stateful[0].index} [{stateful[0].ltype}] carries state from one "
                           "frame to the next; an exported graph cannot carry it, so recurrent networks are not "
                           "exported")
    m = ExportModel(model.cpu().float(), with_decode, with_nms, thresh, nms).eval()
    x = torch.rand(max(batch, 2 if dynamic_batch else 1), model.net.channels, model.net.height, model.net.width)
    path = Path(path)
    names = output_names(m, len(model.output_layers))
    if fmt == "openvino":
        if with_nms:
            raise DarkcfgError("--with-nms is not exported to OpenVINO (its NMS op is darkcfg's own): export the "
                               "decoded boxes (--with-decode) and run NMS after, or use ONNX")
        return _write_openvino(model, m, x, path, names, dynamic_batch, calibration, letterbox)
    if calibration:
        raise DarkcfgError("calibration images quantize OpenVINO exports only (--format openvino)")
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks: the shapes are fixed by the cfg
            traced = torch.jit.trace(m, (x,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        atomic_write(path, lambda fh: torch.jit.save(traced, fh))
        return path
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): "
                           "pip install 'darkcfg[export]'") from None
    dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    table = {torch.ops.darkcfg.nms.default: nms_onnx}
    # the exporter and its optimiser chat on stdout and in warnings: keep the CLI's output to its own lines
    chatter = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            prog = torch.onnx.export(m, (x,), dynamo=True, input_names=["images"], output_names=names,
                                     dynamic_shapes=dyn, custom_translation_table=table, verbose=False)
        finally:
            logging.disable(logging.NOTSET)
    atomic_write(path, lambda fh: fh.write(prog.model_proto.SerializeToString()))
    return path


def _write_openvino(model: Darknet, m: ExportModel, x: torch.Tensor, path: Path, names: list[str], dynamic_batch: bool,
                    calibration: Sequence[str], letterbox: Optional[bool]) -> Path:
    """`m` converted by `convert` (infer/openvino.py) in the form darkcfg's OpenVINO runtime runs (`graph_form`),
    inputs and outputs named as in the ONNX export, int8 when there are calibration images; the IR written by
    `save_ir`."""
    from darkcfg.infer import openvino as ov

    ov.graph_form(m.net, bool(calibration))  # a decode keeps the head layers it took at construction
    ov_model = ov.convert(m, x)
    ov_model.inputs[0].get_tensor().set_names({"images"})
    for out, name in zip(ov_model.outputs, names):
        out.get_tensor().set_names({name})
    if calibration:
        ov_model = ov.quantize(ov_model, ov.calibration_inputs(model, calibration, letterbox), model.cfg_file)
    if not dynamic_batch:
        ov_model.reshape(list(x.shape))
    return ov.save_ir(ov_model, path if path.suffix == ".xml" else path.with_suffix(".xml"))
