"""Section types the reference knows but darkcfg does not build: a clear error instead of a wrong net."""
from __future__ import annotations

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer
from darkcfg.model.layers._registry import register

NAMES = ("contrastive", "local", "detection")


@register(*NAMES)
def build(sec: Section, ctx: BuildContext) -> DarknetLayer:
    raise sec.error(f"section type [{sec.type}] is a Darknet layer that darkcfg does not support yet")
