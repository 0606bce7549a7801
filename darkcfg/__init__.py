"""darkcfg: Darknet .cfg networks on PyTorch, unchanged.

    import darkcfg
    model = darkcfg.load("cfg/yolov3-tiny.cfg", "weights/yolov3-tiny.weights", size=416)
    outputs = model.forward_all(x)   # every layer's output, Darknet's numbering and layout
    detections = model.detect("dog.jpg")

The package reads as the pipeline: `model/` (cfg -> network -> weights, heads), `data/` (dataset and image
files), `infer/` (images -> detections), `eval/` (mAP), `train/`, `export/`; a lower stage never imports a
higher one. `cli.py` is the command line.
"""
import darkcfg.infer.pipeline  # noqa: F401  (registers `Darknet.detect`)
from darkcfg.errors import CfgError, CfgWarning, DarkcfgError, WeightsError
from darkcfg.model.checkpoint import load_checkpoint, save_checkpoint
from darkcfg.model.loading import load
from darkcfg.model.network import Darknet
from darkcfg.model.weights import LoadReport, WeightsHeader, load_weights, save_weights

__version__ = "0.1.0"
__all__ = [
    "CfgError", "CfgWarning", "Darknet", "DarkcfgError", "LoadReport", "WeightsError", "WeightsHeader",
    "load", "load_checkpoint", "load_weights", "save_checkpoint", "save_weights",
]
