"""Dataset loaders. Each module registers an :class:`ImageSet` subclass in :data:`DATASETS`; plugins
arrive through the ``colorbench.datasets`` entry-point group."""

from __future__ import annotations

import importlib
import pkgutil

from bench.datasets.base import DATASETS, BadImage, DatasetError, DatasetNotFound, ImageSet

# Every module here except the shared ones is a loader that registers itself.
_SHARED = {"base", "cache", "io", "pixels", "views"}
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name not in _SHARED:
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["DATASETS", "BadImage", "DatasetError", "DatasetNotFound", "ImageSet"]
