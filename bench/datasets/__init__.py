"""Dataset loaders. Each module registers an :class:`ImageSet` subclass in :data:`DATASETS`; plugins
arrive through the ``colorbench.datasets`` entry-point group."""

from __future__ import annotations

import importlib

from bench.datasets.base import BadImage, DatasetError, DatasetNotFound, ImageSet
from bench.registry import Registry

DATASETS: Registry[type[ImageSet]] = Registry("dataset", "colorbench.datasets", base=ImageSet)

for _name in ("samples", "folder"):
    importlib.import_module(f"bench.datasets.{_name}")

__all__ = ["DATASETS", "BadImage", "DatasetError", "DatasetNotFound", "ImageSet"]
