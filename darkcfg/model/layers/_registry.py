"""Section name -> builder (and the layer class it builds), a `darkcfg.registry.Registry`.

Contract of a builder: a function `(section, ctx) -> DarknetLayer` that reads its options from the
`Section` (which marks them used), checks them against the shapes in the `BuildContext`, and returns a
module constructed from plain keyword arguments. It raises `CfgError` (via `section.error`) for any
value it cannot build. Register it with `@register("name", "alias", ..., layer=LayerClass)` in a module of
`darkcfg.model.layers`; `layer` is the class it builds, which answers questions about a section before
anything is built (a head's expected input: `darkcfg.model.cfgcheck` asks it). The first lookup imports
every such module, so adding a section type touches one file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from darkcfg.registry import Registry

if TYPE_CHECKING:
    from darkcfg.model.cfg import Section
    from darkcfg.model.layers._base import BuildContext, DarknetLayer

    Builder = Callable[[Section, BuildContext], DarknetLayer]


class SectionType(NamedTuple):
    builder: Builder
    layer: Optional[type]


_TYPES: Registry[SectionType] = Registry("darkcfg.model.layers", lambda name: f"section type [{name}]")


def register(*names: str, layer: Optional[type] = None) -> Callable[[Builder], Builder]:
    """Register a builder under Darknet section names (without brackets; names are case-sensitive), with the
    class of the layer it builds."""

    def wrap(fn: Builder) -> Builder:
        for name in names:
            _TYPES.add(name, SectionType(fn, layer))
        return fn

    return wrap


def get_builder(name: str) -> Optional[Builder]:
    entry = _TYPES.get(name)
    return entry.builder if entry else None


def layer_class(name: str) -> Optional[type]:
    """The class a section type builds (None: unknown type, or a builder registered without it)."""
    entry = _TYPES.get(name)
    return entry.layer if entry else None


def section_types() -> list[str]:
    return sorted(str(k) for k in _TYPES.keys())
