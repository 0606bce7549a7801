"""An optional OpenVINO runtime behind darkcfg's interface (`darkcfg detect --runtime openvino`,
`pip install 'darkcfg[openvino]'`): where OpenVINO's CPU kernels are faster than PyTorch's, the detection
pipeline keeps everything else (pre-processing, decode through the heads, NMS, printing) unchanged.

`OpenVinoModel(model)` converts the inference fast path's network (a copy with batch-norm folded, each [yolo] head
and its convolution made one layer of per-channel operations that OpenVINO fuses into the convolution: `fuse_heads`;
returning the heads' outputs) with `openvino.convert_model`, with a dynamic batch, and compiles it for the CPU
with the latency hint and torch's thread count (batches: with the throughput hint, image by image on
several streams: `_batch_queue`). `precision`: "fp32" (INFERENCE_PRECISION_HINT f32: results
equal the plain network's within the fast path's tolerance), "bf16", "default" (OpenVINO's own choice: bf16
on CPUs with AMX or avx512_bf16), or "int8": post-training quantization by NNCF (`pip install 'darkcfg[openvino]'`
installs it) calibrated on `calibration` images (a .data file's valid list, an image list or a folder:
`calibration_images`), pre-processed as detection pre-processes them, on a graph whose [route] groups are
splits (`graph_form`; the others take them by slices); the rest of the graph runs at OpenVINO's
default precision, each activation (Mish included) fused into its quantized convolution (`quantize` has the
fallback where OpenVINO refuses that). The converted model is cached on disk per cfg text, weights and
input size (`$DARKCFG_CACHE`, default ~/.cache/darkcfg, under openvino/), the int8 one also per calibration set,
and OpenVINO caches its compiled blobs beside them, so a second start skips the conversion, the calibration and
most of the compilation.

It reads like a `Darknet` to the pipeline (`DarknetView`, like `InferenceModel`). Networks with recurrent state are
refused (the converted graph cannot carry it). Everything here compiles through `compile_cpu`, which keeps the
calling thread's signal stack (`kept_signal_stack`).

The package: `model` (the runtime and its cache), `graph` (the graph OpenVINO gets, and writing IR), `int8`
(int8 with NNCF, and its calibration images), `core` (importing and compiling).
"""
from __future__ import annotations

from darkcfg.infer.openvino.core import compile_cpu, kept_signal_stack
from darkcfg.infer.openvino.graph import convert, fuse_heads, graph_form, save_ir
from darkcfg.infer.openvino.int8 import calibration_images, calibration_inputs, decompose_mish, quantize
from darkcfg.infer.openvino.model import OpenVinoModel, cache_root, model_key

__all__ = ["OpenVinoModel", "cache_root", "calibration_images", "calibration_inputs", "compile_cpu", "convert",
           "decompose_mish", "fuse_heads", "graph_form", "kept_signal_stack", "model_key", "quantize", "save_ir"]
