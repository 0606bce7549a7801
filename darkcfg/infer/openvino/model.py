"""The OpenVINO runtime behind darkcfg's pipeline: `OpenVinoModel`, and its cache of converted models.

The cache is not trusted blindly: each IR it holds has a manifest of its files' sizes and sha256 (`save_ir`), and
an IR whose files do not match it (a damaged or truncated file, an empty one, no manifest) is converted again with
one warning naming the folder (`ir_damage`), instead of running wrong weights or failing in OpenVINO's reader."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from darkcfg.errors import DarkcfgError, DarkcfgWarning
from darkcfg.infer.fast import DarknetView, InferenceModel
from darkcfg.infer.openvino.core import _import_openvino, compile_cpu
from darkcfg.infer.openvino.graph import convert, graph_form, ir_damage, save_ir
from darkcfg.infer.openvino.int8 import calibration_inputs, calibration_key, quantize
from darkcfg.model.network import Darknet

PRECISIONS = {"fp32": "f32", "bf16": "bf16", "default": None, "int8": None}
GRAPH_FORM = "fused heads, sliced groups; int8: split groups"  # in the cache key: older forms are not reused


def cache_root() -> Path:
    return Path(os.environ.get("DARKCFG_CACHE") or Path.home() / ".cache" / "darkcfg") / "openvino"


def model_key(model: Darknet) -> str:
    """A digest of what the converted graph depends on: the cfg text, the input size and every weight."""
    h = hashlib.sha256()
    h.update(GRAPH_FORM.encode())
    h.update(model.cfg_text.encode())
    h.update(f"{model.net.width}x{model.net.height}x{model.net.channels}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _intact(xml: Path) -> bool:
    """Whether the cache holds the IR `xml` as it was written (`ir_damage`); a damaged one is named in a warning and
    taken for missing, so that the caller converts it again (and rewrites it)."""
    if not xml.is_file():
        return False
    damage = ir_damage(xml)
    if damage is not None:
        warnings.warn(f"{xml.parent}: the cached OpenVINO model {xml.name} is damaged ({damage}); converting it again",
                      DarkcfgWarning, stacklevel=3)
    return damage is None


class OpenVinoModel(DarknetView, nn.Module):
    """A Darknet network run by OpenVINO (module docstring)."""

    def __init__(self, model: Darknet, precision: str = "fp32", cache: Optional[Path] = None,
                 threads: Optional[int] = None, calibration: Sequence[str] = (),
                 letterbox: Optional[bool] = None) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise DarkcfgError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if model.stateful:
            layer = next(m for m in model.layers if m.stateful)
            raise DarkcfgError(f"{model.cfg_file}: layer {layer.index} [{layer.ltype}] carries state from frame to "
                               "frame; the OpenVINO runtime cannot: use the torch runtime")
        if precision == "int8" and not calibration:
            raise DarkcfgError("precision int8 needs calibration images (--calibration: a .data file, an image list "
                               "or a folder)")
        _import_openvino()  # its absence said before any work
        self.darknet = model.eval()
        self.precision = precision
        self._dummy = nn.Parameter(torch.zeros(0), requires_grad=False)  # device and dtype for the pipeline
        root = Path(cache) if cache is not None else cache_root()
        folder = root / model_key(model)
        quantized = precision == "int8"
        if quantized:
            lb = bool(model.net.letter_box) if letterbox is None else bool(letterbox)
            self._ir = folder / f"int8-{calibration_key(calibration, lb)}.xml"
        else:
            self._ir = folder / "model.xml"
        self.cached = _intact(self._ir)
        if not self.cached:
            graph = InferenceModel(self.darknet, channels_last=False).darknet.eval()  # a copy, batch-norm folded
            ov_model = convert(graph_form(graph, quantized), torch.zeros(1, *model.input_shape))
            if quantized:
                ov_model = quantize(ov_model, calibration_inputs(self.darknet, calibration, lb), model.cfg_file)
            save_ir(ov_model, self._ir, manifest=True)
        self._config = {"INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                        "CACHE_DIR": str(root / "blobs")}
        if PRECISIONS[precision] is not None:
            self._config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        self.compiled = self._compile("LATENCY")
        self._request = self.compiled.create_infer_request()
        # one-image calls: OpenVINO writes the outputs straight into new torch tensors (no copy after the call)
        self._shapes = [tuple(o.get_shape()) for o in self.compiled.outputs]  # f32 outputs
        self._bound: list[Tensor] = []  # the tensors the request writes into: alive until the next call rebinds
        self._queue = None  # batches: _batch_queue

    @staticmethod
    def _read(xml: Path):  # noqa: ANN205 - openvino.Model
        """The IR `xml`, its weights read into memory: mapped from the file (OpenVINO's default), the pages the
        compiled model still reads could be evicted under memory pressure and read back from disk mid-forward."""
        core = _import_openvino().Core()
        core.set_property({"ENABLE_MMAP": False})
        return core.read_model(str(xml))

    def _compile(self, hint: str):  # noqa: ANN202 - openvino.CompiledModel
        """The IR compiled with `hint` (LATENCY or THROUGHPUT) for one image: every request here is one image (a
        batch runs image by image, `_batch_queue`), and a static shape spares OpenVINO the shape work it does per
        call with a free batch size (~2 ms of yolov4-tiny's 40 in fp32). The IR itself keeps its free batch."""
        ov_model = self._read(self._ir)
        ov_model.reshape([1, *self.darknet.input_shape])
        return compile_cpu(ov_model, {**self._config, "PERFORMANCE_HINT": hint})

    def _batch_queue(self):  # noqa: ANN202 - openvino.AsyncInferQueue
        """Requests for batches, compiled on first use with OpenVINO's throughput hint (several streams sharing the
        threads): a batch runs image by image, the streams in parallel. On the 2-core machine of the README's
        table, in fp32: yolov4-csp 512 at batch 8 took 383 ms per image this way against 437 for OpenVINO on the
        ONNX export as one batch-8 request (`make bench`); yolov4-tiny 416 is level either way (25.8, 38.5 and
        34.2 ms against 28.0, 38.8 and 35.2 in three interleaved runs), and batch-2 or batch-4 requests on the
        streams were not consistently faster (30.9-36.9 ms)."""
        if self._queue is None:
            ov = _import_openvino()
            compiled = self._compile("THROUGHPUT")
            self._queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return self._queue

    @torch.inference_mode()
    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, C, H, W) float32 -> the heads' outputs, as `Darknet.forward` gives them."""
        # the input is read in place and each output copied once, out of the requests' own buffers
        x = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        n = len(self.compiled.outputs)
        if len(x) == 1:
            ov, r = _import_openvino(), self._request
            outs = [torch.empty(shape) for shape in self._shapes]
            r.set_input_tensor(ov.Tensor(x, shared_memory=True))
            for k, o in enumerate(outs):
                r.set_output_tensor(k, ov.Tensor(o.numpy(), shared_memory=True))
            self._bound = outs
            r.infer()
            return outs
        queue = self._batch_queue()
        images: list = [None] * len(x)

        def done(request, i: int) -> None:  # noqa: ANN001 - openvino.InferRequest
            images[i] = [np.array(request.get_output_tensor(k).data) for k in range(n)]

        queue.set_callback(done)
        for i in range(len(x)):
            queue.start_async({0: x[i:i + 1]}, userdata=i, share_inputs=True)
        queue.wait_all()
        if any(r is None for r in images):
            raise DarkcfgError("OpenVINO returned no outputs for an image of the batch")
        return [torch.from_numpy(np.concatenate([r[k] for r in images])) for k in range(n)]
