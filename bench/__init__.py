"""colorbench: train, score and compare image colourisation methods side by side.

The Python API, for notebooks: ``bench.load_results(dir)`` (:mod:`bench.frames`) and ``bench.score(fn,
dataset=...)`` (:mod:`bench.api`).
"""

from __future__ import annotations

import importlib
from typing import Any

from bench._version import __version__

# Loaded on first use (PEP 562), so that ``import bench`` and ``bench --help`` import neither pandas nor
# torch. ``importlib`` rather than an import statement: these run only after this module is fully loaded.
_LAZY = {"load_results": "bench.frames", "score": "bench.api"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
