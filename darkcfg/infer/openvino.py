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
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from darkcfg.data.images import read_bgr
from darkcfg.errors import DarkcfgError
from darkcfg.infer.fast import DarknetView, InferenceModel
from darkcfg.model.layers.route import Route
from darkcfg.model.network import Darknet

PRECISIONS = {"fp32": "f32", "bf16": "bf16", "default": None, "int8": None}
GRAPH_FORM = "fused heads, sliced groups; int8: split groups"  # in the cache key: older forms are not reused
CALIBRATION_IMAGES = 300  # NNCF's default subset: images beyond it are sampled evenly


def calibration_images(source: str) -> list[str]:
    """The images `--calibration` names: a .data file (its valid list, else train), a list file or a folder."""
    from darkcfg.data.dataset import image_list, open_data

    p = Path(source)
    if p.suffix == ".data" and p.is_file():
        source = open_data(p).valid_list()
    if not Path(source).exists():
        raise DarkcfgError(f"{source}: no such calibration list or folder")
    paths = image_list(source)
    if not paths:
        raise DarkcfgError(f"{source}: no calibration images listed")
    if len(paths) > CALIBRATION_IMAGES:
        paths = [paths[round(k * (len(paths) - 1) / (CALIBRATION_IMAGES - 1))] for k in range(CALIBRATION_IMAGES)]
    return paths


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then give the calling thread back the signal stack (sigaltstack) it had before.

    OpenVINO's CPU plugin, on CPUs with AMX (whose state makes signal frames large), gives the thread that creates
    it a signal stack of its own (mmap'd) and, when that plugin instance is destroyed, puts back the one it found
    and unmaps its own. Two instances destroyed out of order (two `Core`s freed by the garbage collector) therefore
    leave the thread on an unmapped signal stack, and the next signal handled there (SIGCHLD when a subprocess
    ends; Python's handlers run on the signal stack) kills the process with SIGSEGV: the test suite crashed that
    way in training tests run after the OpenVINO ones. Putting the previous stack back at once means every
    instance restores a live stack."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _StackT()
    if libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


def compile_cpu(model, config: Optional[dict] = None):  # noqa: ANN001, ANN201 - openvino.Model or IR path, CompiledModel
    """`model` (an `openvino.Model` or an IR's .xml path) compiled for the CPU by a new `Core` with `config`,
    the calling thread's signal stack kept (`kept_signal_stack`)."""
    ov = _import_openvino()
    with kept_signal_stack():
        return ov.Core().compile_model(model if not isinstance(model, Path) else str(model), "CPU", config or {})


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


def _import_openvino():  # noqa: ANN202 - the openvino module
    try:
        import openvino
    except ImportError:
        raise DarkcfgError("--runtime openvino needs the openvino package: pip install 'darkcfg[openvino]'") from None
    return openvino


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
        self.cached = self._ir.is_file()
        if not self.cached:
            graph = InferenceModel(self.darknet, channels_last=False).darknet.eval()  # a copy, batch-norm folded
            ov_model = convert(graph_form(graph, quantized), torch.zeros(1, *model.input_shape))
            if quantized:
                ov_model = quantize(ov_model, calibration_inputs(self.darknet, calibration, lb), model.cfg_file)
            save_ir(ov_model, self._ir)
        self._config = {"INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                        "CACHE_DIR": str(root / "blobs")}
        if PRECISIONS[precision] is not None:
            self._config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        self.compiled = self._compile("LATENCY")
        self._request = self.compiled.create_infer_request()
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
            out = self._request.infer({0: x}, share_inputs=True, share_outputs=True)
            return [torch.from_numpy(np.array(out[o])) for o in self.compiled.outputs]
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


def calibration_inputs(model: Darknet, paths: Sequence[str], letterbox: Optional[bool]) -> list[np.ndarray]:
    """Each image as detection feeds it to `model`: read, converted to the cfg's channels, resized or letterboxed
    (None: as the cfg says) to the network size -> (1, C, H, W) float32."""
    from darkcfg.infer.pipeline import Detector
    from darkcfg.progress import Progress

    det = Detector(model, letterbox=letterbox)
    inputs = []
    with Progress(len(paths), "calibration images", unit="img") as bar:
        for p in paths:
            inputs.append(det.prepare(det.to_image(read_bgr(p)))[None])
            bar.update(1)
    return inputs


def calibration_key(paths: Sequence[str], letterbox: bool) -> str:
    """A digest of what the int8 model depends on beyond the network: each calibration image (path, size,
    modification time), the letterbox setting and the NNCF version."""
    import nncf

    h = hashlib.sha256(f"{letterbox} {nncf.__version__}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def quantize(ov_model, inputs: Sequence[np.ndarray], name: str = "model"):  # noqa: ANN001, ANN201 - openvino.Model
    """NNCF's post-training quantization of `ov_model` on `inputs` (each (1, C, H, W) float32): the MIXED preset
    (symmetric weights, asymmetric activations, as leaky and mish outputs are not symmetric) with fast bias
    correction; the heads' output convolutions stay unquantized (they write the boxes and scores: quantizing them
    cost yolov4-tiny 0.09 mAP points more on the shapes set, -0.29 against -0.20 in the README's table then).
    The result is what the runtime caches and export writes, so it is made compilable here, once
    (`mish_written_out_if_refused`; `name`, the cfg file, in its warning)."""
    try:
        import nncf
    except ImportError:
        raise DarkcfgError("precision int8 needs the nncf package: pip install 'darkcfg[openvino]'") from None
    heads = [op.get_friendly_name() for op in head_convolutions(ov_model)]
    with kept_signal_stack():  # NNCF compiles the model to collect statistics
        q = nncf.quantize(ov_model, nncf.Dataset(list(inputs)), preset=nncf.QuantizationPreset.MIXED,
                          subset_size=len(inputs), ignored_scope=nncf.IgnoredScope(names=heads, validate=False))
    return mish_written_out_if_refused(q, name)


def head_convolutions(ov_model) -> list:  # noqa: ANN001
    """The convolutions that write the network's outputs (each head's last [convolutional]): from every output, back
    through the ops between it and the first convolution on each path (the heads' activations and reshapes)."""
    found, seen = [], set()
    todo = [r.input_value(0).get_node() for r in ov_model.get_results()]
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if node.get_type_name() == "Convolution":
            found.append(node)
            continue
        if node.get_type_name() == "ShapeOf":  # a shape computation, not a path of values
            continue
        todo += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return found


def mish_written_out_if_refused(q, name: str = "model"):  # noqa: ANN001, ANN201 - openvino.Model
    """The quantized model `q` as it is where OpenVINO's CPU plugin compiles it (each Mish fused into its quantized
    convolution); where the plugin refuses an operation it fused into one ("could not append an elementwise
    post-op", openvinotoolkit/openvino#20716: there, a quantization range that is not finite), `q` with its Mish
    written out (`decompose_mish`: it then runs unfused, slower), with a warning naming `name`. On the AMX machine
    of the README's table every quantized model compiled with Mish fused."""
    try:
        compile_cpu(q)
    except RuntimeError as e:
        if "could not append an elementwise post-op" not in str(e):
            raise
        warnings.warn(f"{name}: int8: OpenVINO could not fuse an operation into a quantized convolution; Mish is "
                      "written out and runs unfused (slower)", stacklevel=4)
        return decompose_mish(q)
    return q


def decompose_mish(ov_model):  # noqa: ANN001, ANN201 - openvino.Model
    """Mish written out as x * n / (n + 2) with n = e^u (e^u + 2), u = min(x, 20): equal to x * tanh(softplus(x))
    without cancellation, and x above 20 as the reference's softplus threshold gives. This form is not fused back
    into Mish (nor into the convolution before it): for quantized models OpenVINO refuses as they are
    (`mish_written_out_if_refused`)."""
    import openvino.opset13 as ops

    mish = [op for op in ov_model.get_ops() if op.get_type_name() == "Mish"]
    if not mish:
        return ov_model
    two, limit = ops.constant(np.float32(2.0)), ops.constant(np.float32(20.0))
    for op in mish:
        x = op.input_value(0)
        e = ops.exp(ops.minimum(x, limit))
        n = ops.multiply(e, ops.add(e, two))
        new = ops.multiply(x, ops.divide(n, ops.add(n, two)))
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(new.output(0))
    ov_model.validate_nodes_and_infer_types()
    return ov_model
