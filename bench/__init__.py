"""colorbench: train, score and compare image colourisation methods side by side.

``bench.score(fn, dataset=...)`` scores a Python callable (:mod:`bench.api`). It is loaded on first use:
``import bench`` (and ``bench --help``) imports no torch.
"""

from bench._version import __version__

__all__ = ["__version__", "score"]


def __getattr__(name: str):
    if name == "score":
        from bench.api import score

        return score
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
