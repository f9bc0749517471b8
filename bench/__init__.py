"""colorbench: train, score and compare image colourisation methods side by side."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The Python API, loaded on first use (PEP 562) so that ``import bench`` and ``bench --help`` import
# neither pandas nor torch. ``importlib`` rather than an import statement: bench.store reads __version__
# from this module, and these imports only ever run after it is fully loaded, so they cannot form a cycle.
_LAZY = {"load_results": "bench.frames"}

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
