"""What every dataset loader gives: a split of full-size uint8 RGB images with stable ids.

Views built on top (:mod:`bench.datasets.views`) turn a split into training crops or into the fixed
evaluation protocol of the dataset's card; loaders never crop.
"""

from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.config import DatasetCard

SPLITS = ("train", "test")


class DatasetError(Exception):
    """Base class of user-facing dataset errors (the message names the path and the fix)."""


class DatasetNotFound(DatasetError):
    pass


class BadImage(DatasetError):
    """An image file that cannot be decoded; the message names the file."""


def default_root(name: str, root: str | os.PathLike | None) -> Path:
    """``--root``, then ``$BENCH_DATA/<name>``, then ``~/.cache/colorbench/data/<name>``."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("BENCH_DATA")
    return (Path(base) if base else Path.home() / ".cache" / "colorbench" / "data") / name


class ImageSet(Dataset, abc.ABC):
    """One split of a dataset. ``load(i)`` is a (3, H, W) uint8 RGB tensor of the full image."""

    name: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True

    def __init__(self, split: str, root: str | os.PathLike | None = None):
        if split not in SPLITS:
            raise DatasetError(f"{self.name}: unknown split {split!r}; choices: {', '.join(SPLITS)}")
        self.split = split
        self.card = DatasetCard.load(self.name)
        self.root = default_root(self.name, root) if self.needs_root else None

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image_id(self, i: int) -> str:
        """A stable id of image ``i`` (its relative path, for files)."""

    @abc.abstractmethod
    def load(self, i: int) -> Tensor:
        """Image ``i`` as a (3, H, W) uint8 RGB tensor."""

    def __getitem__(self, i: int) -> Tensor:
        return self.load(i)

    def fingerprint_parts(self) -> list[str]:
        """Strings that change when the split's content changes (ids and sizes, by default)."""
        return [self.image_id(i) for i in range(len(self))]

    def identity(self) -> dict[str, Any]:
        """What results record about the data: name, split, size, a content hash and the eval protocol."""
        digest = hashlib.sha256("\n".join(self.fingerprint_parts()).encode()).hexdigest()
        return {
            "name": self.name,
            "split": self.split,
            "n_images": len(self),
            "content_hash": digest,
            "root": str(self.root) if self.root else None,
            "eval_protocol": dict(self.card.eval),
        }


def file_fingerprint(path: Path, rel_to: Path) -> str:
    st = path.stat()
    return f"{path.relative_to(rel_to).as_posix()}:{st.st_size}"


def hash_split(key: str, test_fraction: float) -> str:
    """A split decided by a hash of ``key``: stable as other files come and go."""
    h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_fraction else "train"


def as_uint8_rgb(t: Tensor) -> Tensor:
    if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) uint8 tensor, got {tuple(t.shape)} {t.dtype}")
    return t
