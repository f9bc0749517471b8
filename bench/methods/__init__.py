"""Method adapters. Each module registers itself in :data:`METHODS`; plugins arrive via the
``colorbench.methods`` entry-point group (an entry point names a :class:`~bench.methods.base.Method`
subclass, or a module that registers its classes itself)."""

from __future__ import annotations

import importlib
import pkgutil

from bench.methods.base import METHODS, Method, NoParams, Update

# Every module in this package is an adapter that registers itself (helpers start with "_" or "base").
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["METHODS", "Method", "NoParams", "Update"]
