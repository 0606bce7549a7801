"""Darknet layer types, one module per section type. Each module registers its section names; the
registry imports them all on the first lookup (`_registry.get_builder`), so adding a type touches one file."""
from __future__ import annotations

from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import get_builder, layer_class, register, section_types

__all__ = ["Blob", "BuildContext", "DarknetLayer", "Shape", "get_builder", "layer_class", "register", "section_types"]
