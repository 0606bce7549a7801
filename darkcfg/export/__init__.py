"""The export stage: a network as a file other runtimes run (ONNX, TorchScript): `export`."""
from darkcfg.export.writer import FORMATS, Exported, export, export_files

__all__ = ["FORMATS", "Exported", "export", "export_files"]
