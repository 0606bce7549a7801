"""darkcfg: Darknet .cfg networks on PyTorch, unchanged.

    import darkcfg
    model = darkcfg.load("cfg/yolov3-tiny.cfg", "weights/yolov3-tiny.weights", size=416)
    outputs = model.forward_all(x)   # every layer's output, Darknet's numbering and layout
    detections = model.detect("dog.jpg")          # a detector; a classifier: model.classify("dog.jpg", top=5)
    for index, frame, dets in model.track("clip.mp4"):  # dets[i].track_id: the same object keeps its id
        ...
    detector = darkcfg.load_detector("cfg/yolov4-tiny.cfg", names="obj.names", runtime=darkcfg.Runtime("openvino"))

The package reads as the pipeline: `model/` (cfg -> network -> weights, heads), `data/` (dataset and image
files), `infer/` (images -> detections), `eval/` (mAP), `train/`, `export/`; a lower stage never imports a
higher one. `cli/` is the command line.

Importing `darkcfg` is cheap (no torch): the names below are loaded on first use (PEP 562), so that the command
line starts, and `darkcfg --help` answers, without loading PyTorch. Touching any of them also loads the
inference stage, which gives every `Darknet` its `detect`, `stream`, `track` and `classify` methods.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from darkcfg.errors import CfgError, CfgWarning, DarkcfgError, WeightsError

__version__ = "0.1.0"

_LAZY = {
    "Darknet": "darkcfg.model.network", "LoadReport": "darkcfg.model.weights", "WeightsHeader": "darkcfg.model.weights",
    "load_weights": "darkcfg.model.weights", "save_weights": "darkcfg.model.weights",
    "load_checkpoint": "darkcfg.model.checkpoint", "save_checkpoint": "darkcfg.model.checkpoint",
    "load": "darkcfg.model.loading", "Detector": "darkcfg.infer.detector", "Detection": "darkcfg.infer.detections",
    "Runtime": "darkcfg.infer.runtime", "load_detector": "darkcfg.infer.runtime",
    "Classifier": "darkcfg.infer.classify", "Prediction": "darkcfg.infer.classify",
}
__all__ = ["CfgError", "CfgWarning", "DarkcfgError", "WeightsError", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from darkcfg.infer.classify import Classifier, Prediction  # noqa: F401
    from darkcfg.infer.detections import Detection  # noqa: F401
    from darkcfg.infer.detector import Detector  # noqa: F401
    from darkcfg.infer.runtime import Runtime, load_detector  # noqa: F401
    from darkcfg.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
    from darkcfg.model.loading import load  # noqa: F401
    from darkcfg.model.network import Darknet  # noqa: F401
    from darkcfg.model.weights import LoadReport, WeightsHeader, load_weights, save_weights  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'darkcfg' has no attribute {name!r}")
    importlib.import_module("darkcfg.infer.detector")  # registers Darknet.detect / Darknet.stream
    importlib.import_module("darkcfg.infer.run")  # registers Darknet.track (and stream(track=True))
    importlib.import_module("darkcfg.infer.classify")  # registers Darknet.classify
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
