"""Section name -> builder registry.

Contract of a builder: a function `(section, ctx) -> DarknetLayer` that reads its options from the
`Section` (which marks them used), checks them against the shapes in the `BuildContext`, and returns a
module constructed from plain keyword arguments. It raises `CfgError` (via `section.error`) for any
value it cannot build. Register it with `@register("name", "alias", ...)` in a module of
`darkcfg.layers`; the package imports every such module itself, so adding a section type touches one file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from darkcfg.cfg import Section
    from darkcfg.layers._base import BuildContext, DarknetLayer

    Builder = Callable[[Section, BuildContext], DarknetLayer]

_BUILDERS: dict[str, Builder] = {}


def register(*names: str) -> Callable[[Builder], Builder]:
    """Register a builder under Darknet section names (without brackets; names are case-sensitive)."""

    def wrap(fn: Builder) -> Builder:
        for name in names:
            if name in _BUILDERS:
                raise RuntimeError(f"section type [{name}] registered twice")
            _BUILDERS[name] = fn
        return fn

    return wrap


def get_builder(name: str) -> Optional[Builder]:
    return _BUILDERS.get(name)


def section_types() -> list[str]:
    return sorted(_BUILDERS)
