"""A name -> entry map filled by the modules of one package, which it imports itself on the first lookup.

Both extension points of darkcfg use it: cfg section types (`darkcfg.model.layers`: section name -> builder)
and head losses (`darkcfg.train.losses`: head class -> loss). Its contract: an entry is registered once
(a second registration of the same key is a programming error, raised at import); a lookup first imports
every public module (name not starting with `_`) of the package, so adding an entry touches one file and no
central list; the import is lazy, so that a module the entries need may import the package's base classes.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Hashable, Iterator
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries keyed by hashable keys, discovered from the modules of `package` (a dotted name).

    `what(key)` names a key in the duplicate-registration error (default: repr)."""

    def __init__(self, package: str, what: Callable[[Hashable], str] = repr) -> None:
        self.package, self.what = package, what
        self._entries: dict[Hashable, T] = {}
        self._discovered = False

    def register(self, *keys: Hashable) -> Callable[[T], T]:
        """Decorator: register the decorated object under every key."""

        def wrap(entry: T) -> T:
            for key in keys:
                self.add(key, entry)
            return entry

        return wrap

    def add(self, key: Hashable, entry: T) -> None:
        if key in self._entries:
            raise RuntimeError(f"{self.what(key)} registered twice")
        self._entries[key] = entry

    def discover(self) -> None:
        """Import every public module of the package once (each registers its entries)."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(package.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, key: Hashable) -> Optional[T]:
        self.discover()
        return self._entries.get(key)

    def keys(self) -> list[Hashable]:
        self.discover()
        return list(self._entries)

    def items(self) -> Iterator[tuple[Hashable, T]]:
        self.discover()
        return iter(list(self._entries.items()))
