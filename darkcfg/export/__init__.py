"""The export stage: a network as a file other runtimes run (ONNX, TorchScript): `export`."""
from darkcfg.export.writer import FORMATS, export

__all__ = ["FORMATS", "export"]
