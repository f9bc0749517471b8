"""Method adapters. Each module registers itself in :data:`METHODS`; plugins arrive via the
``colorbench.methods`` entry-point group (an entry point names a :class:`~bench.methods.base.Method`
subclass, or a module that registers its classes itself)."""

from __future__ import annotations

import importlib

from bench.methods.base import Method, NoParams, Update
from bench.registry import Registry

METHODS: Registry[type[Method]] = Registry("method", "colorbench.methods", base=Method)

_BUILTIN = ("gray", "kmeans_cnn")
for _name in _BUILTIN:
    importlib.import_module(f"bench.methods.{_name}")

__all__ = ["METHODS", "Method", "NoParams", "Update"]
