"""int8: NNCF's post-training quantization of a converted network, calibrated on images pre-processed as detection
pre-processes them (`calibration_images` names them: a .data file's valid list, a list file or a folder;
`calibration_inputs` reads them), the heads' output convolutions left in float, and Mish written out where
OpenVINO cannot fuse it into a quantized convolution (`mish_written_out_if_refused`)."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from darkcfg.data.images import read_bgr
from darkcfg.errors import DarkcfgError
from darkcfg.infer.openvino.core import compile_cpu, kept_signal_stack
from darkcfg.model.network import Darknet

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


def calibration_inputs(model: Darknet, paths: Sequence[str], letterbox: Optional[bool]) -> list[np.ndarray]:
    """Each image as detection feeds it to `model`: read, converted to the cfg's channels, resized or letterboxed
    (None: as the cfg says) to the network size -> (1, C, H, W) float32."""
    from darkcfg.infer.detector import Detector
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
