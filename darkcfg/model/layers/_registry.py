"""Section name -> builder registry.

Contract of a builder: a function `(section, ctx) -> DarknetLayer` that reads its options from the
`Section` (which marks them used), checks them against the shapes in the `BuildContext`, and returns a
module constructed from plain keyword arguments. It raises `CfgError` (via `section.error`) for any
value it cannot build. Register it with `@register("name", "alias", ...)` in a module of
`darkcfg.model.layers`; the first lookup imports every such module (lazily, so that a module the layers
need, such as `darkcfg.model.heads`, may import the package's base classes), so adding a section type
touches one file.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from darkcfg.model.cfg import Section
    from darkcfg.model.layers._base import BuildContext, DarknetLayer

    Builder = Callable[[Section, BuildContext], DarknetLayer]

_BUILDERS: dict[str, Builder] = {}
_discovered = False


def _discover() -> None:
    """Import every public module of the layers package once (each registers its builders)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")


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
    _discover()
    return _BUILDERS.get(name)


def section_types() -> list[str]:
    _discover()
    return sorted(_BUILDERS)
