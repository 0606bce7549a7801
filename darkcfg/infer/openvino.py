"""An optional OpenVINO runtime behind darkcfg's interface (`darkcfg detect --runtime openvino`,
`pip install 'darkcfg[openvino]'`): where OpenVINO's CPU kernels are faster than PyTorch's, the detection
pipeline keeps everything else (pre-processing, decode through the heads, NMS, printing) unchanged.

`OpenVinoModel(model)` converts the inference fast path's network (a copy with batch-norm folded, returning the
heads' raw outputs) with `openvino.convert_model`, with a dynamic batch, and compiles it for the CPU
with the latency hint and torch's thread count. `precision`: "fp32" (INFERENCE_PRECISION_HINT f32: results
equal the plain network's within the fast path's tolerance), "bf16", or "default" (OpenVINO's own choice: bf16
on CPUs with AMX or avx512_bf16). The converted model is cached on disk per cfg text, weights and input size
(`$DARKCFG_CACHE`, default ~/.cache/darkcfg, under openvino/), and OpenVINO caches its compiled blobs beside it,
so a second start skips the conversion and most of the compilation.

It reads like a `Darknet` to the pipeline (`DarknetView`, like `InferenceModel`). Networks with recurrent state are
refused (the converted graph cannot carry it).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from darkcfg.errors import DarkcfgError
from darkcfg.infer.fast import DarknetView, InferenceModel
from darkcfg.model.network import Darknet

PRECISIONS = {"fp32": "f32", "bf16": "bf16", "default": None}


def cache_root() -> Path:
    return Path(os.environ.get("DARKCFG_CACHE") or Path.home() / ".cache" / "darkcfg") / "openvino"


def model_key(model: Darknet) -> str:
    """A digest of what the converted graph depends on: the cfg text, the input size and every weight."""
    h = hashlib.sha256()
    h.update(model.cfg_text.encode())
    h.update(f"{model.net.width}x{model.net.height}x{model.net.channels}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _import_openvino():  # noqa: ANN202 - the openvino module
    try:
        import openvino
    except ImportError:
        raise DarkcfgError("--runtime openvino needs the openvino package: pip install 'darkcfg[openvino]'") from None
    return openvino


class OpenVinoModel(DarknetView, nn.Module):
    """A Darknet network run by OpenVINO (module docstring)."""

    def __init__(self, model: Darknet, precision: str = "fp32", cache: Optional[Path] = None,
                 threads: Optional[int] = None) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise DarkcfgError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if model.stateful:
            layer = next(m for m in model.layers if m.stateful)
            raise DarkcfgError(f"{model.cfg_file}: layer {layer.index} [{layer.ltype}] carries state from frame to "
                               "frame; the OpenVINO runtime cannot: use the torch runtime")
        ov = _import_openvino()
        self.darknet = model.eval()
        self.precision = precision
        self._dummy = nn.Parameter(torch.zeros(0), requires_grad=False)  # device and dtype for the pipeline
        root = Path(cache) if cache is not None else cache_root()
        folder = root / model_key(model)
        xml = folder / "model.xml"
        core = ov.Core()
        if xml.is_file():
            ov_model = core.read_model(str(xml))
            self.cached = True
        else:
            ov_model = self._convert(ov)
            self._save(ov, ov_model, folder)
            self.cached = False
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                  "CACHE_DIR": str(root / "blobs")}
        if PRECISIONS[precision] is not None:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        self.compiled = core.compile_model(ov_model, "CPU", config)
        self._request = self.compiled.create_infer_request()

    def _convert(self, ov):  # noqa: ANN001, ANN202
        c, h, w = self.darknet.input_shape
        graph = InferenceModel(self.darknet, channels_last=False).darknet.eval()  # a copy, batch-norm folded
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on the input check: the shape is fixed by the cfg
            ov_model = ov.convert_model(graph, example_input=torch.zeros(1, c, h, w))
        ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([-1, c, h, w])})
        return ov_model

    @staticmethod
    def _save(ov, ov_model, folder: Path) -> None:  # noqa: ANN001
        """Write the IR into a temporary folder beside `folder`, then rename it into place (atomic)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        try:
            ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)  # keep float32 weights
            try:
                os.rename(tmp, folder)
            except OSError:  # another process wrote it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @torch.inference_mode()
    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, C, H, W) float32 -> the heads' outputs, as `Darknet.forward` gives them."""
        out = self._request.infer({0: np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())})
        return [torch.from_numpy(np.array(out[o])) for o in self.compiled.outputs]
