"""Darknet layer types. Every module here registers its section names; they are all imported here."""
from __future__ import annotations

import importlib
import pkgutil

from darkcfg.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.layers._registry import get_builder, register, section_types

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Blob", "BuildContext", "DarknetLayer", "Shape", "get_builder", "register", "section_types"]
