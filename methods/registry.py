"""Method names -> Method classes (a name -> class map in timm's `register_model` style)."""

from __future__ import annotations

import difflib
import fnmatch

from bench.errors import BenchError
from methods.base import Method
from methods.step0 import recipe_of

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    recipe_of(cls)  # an unknown step-0 recipe fails at registration, not mid-run
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a method (for throwaway methods registered by tests)."""
    _REGISTRY.pop(name, None)


def method_names(pattern: str = "*") -> list[str]:
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def get_method(name: str) -> type[Method]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise BenchError(f"unknown method {name!r}.{hint} Known methods: {', '.join(_REGISTRY)} "
                     "(`bench list methods`)")
