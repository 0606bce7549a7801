"""darkcfg: Darknet .cfg networks on PyTorch, unchanged.

    import darkcfg
    model = darkcfg.load("cfg/yolov3-tiny.cfg", "weights/yolov3-tiny.weights", size=416)
    outputs = model.forward_all(x)   # every layer's output, Darknet's numbering and layout
"""
from darkcfg.api import load
from darkcfg.checkpoint import load_checkpoint, save_checkpoint
from darkcfg.errors import CfgError, CfgWarning, DarkcfgError, WeightsError
from darkcfg.network import Darknet, WeightsHeader
from darkcfg.weights import LoadReport, load_weights, save_weights

__version__ = "0.1.0"
__all__ = [
    "CfgError", "CfgWarning", "Darknet", "DarkcfgError", "LoadReport", "WeightsError", "WeightsHeader",
    "load", "load_checkpoint", "load_weights", "save_checkpoint", "save_weights",
]
