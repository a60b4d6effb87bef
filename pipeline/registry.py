"""A tiny named registry used for stages, datasets, thinking formats and commands.

Entries can be registered eagerly (decorator) or lazily as ``"module:attr"``
strings, so that ``import pipeline`` never imports vllm, ray or triton.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable[[T], T] | None:
        """Register ``obj`` (or a ``"module:attr"`` path) under ``name``; usable as a decorator."""
        if obj is not None:
            self._items[name] = obj
            return None

        def deco(o: T) -> T:
            self._items[name] = o
            return o

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {sorted(self._items)}")
        obj = self._items[name]
        if isinstance(obj, str):
            mod, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(mod), attr)
            self._items[name] = obj
        return obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
