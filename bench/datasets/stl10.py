"""``stl10`` (and ``stl10_unlabeled``): STL-10's 96x96 colour photos from the official binary files.

Layout: ``<root>/stl10_binary/{train,test,unlabeled}_X.bin``, each a run of uint8 images stored as
3 x 96 x 96 with every channel column-major (the format ``torchvision.datasets.STL10`` reads). We read
it directly through a memory map instead of ``torchvision.datasets.STL10``: torchvision loads a whole
file into memory (2.7 GB for the unlabeled split) and refuses any file whose MD5 differs from the
official one, while fixtures, subsets and re-encodes must still load (marked official=false). The tests
check this reader against torchvision's on the same files.

train: train_X.bin (5,000); ``stl10_unlabeled`` adds unlabeled_X.bin (100,000) to it. test: test_X.bin
(8,000). Labels are not used. A split is official when every file it reads has the MD5 torchvision
pins (dataset card), and the image count is the official one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.datasets.base import DATASETS, DatasetError, DatasetNotFound, ImageSet
from bench.datasets.io import GRAY_FRACTION, GRAY_SPREAD

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
FOLDER = "stl10_binary"


def gray_indices(path: Path) -> list[int]:
    """Indices of truly grayscale images in an STL-10 binary file (vectorised, in chunks)."""
    arr = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE * SIDE)
    out: list[int] = []
    for start in range(0, len(arr), 2048):
        a = np.asarray(arr[start : start + 2048])
        colourful = ((a.max(1) - a.min(1)) > GRAY_SPREAD).sum(1)
        out += (np.nonzero(colourful <= GRAY_FRACTION * SIDE * SIDE)[0] + start).tolist()
    return out


@DATASETS.register("stl10", "STL-10 96x96 photos: train 5,000 / test 8,000 (official binary files)")
class STL10(ImageSet):
    name = "stl10"
    data_name = "stl10"
    with_unlabeled = False
    memory_mapped = True

    def __init__(self, split: str, root=None, **kwargs):
        super().__init__(split, root, **kwargs)
        from bench.datasets._scan import file_fact

        self.folder = self.root / FOLDER if (self.root / FOLDER).is_dir() else self.root
        parts = ["train", "unlabeled"] if split == "train" and self.with_unlabeled else [split]
        self.paths = [self.folder / f"{p}_X.bin" for p in parts]
        self.stems = parts
        self.counts: list[int] = []
        for path in self.paths:
            if not path.is_file():
                raise DatasetNotFound(
                    f"{self.name}: no STL-10 at {self.root} (expected {FOLDER}/{path.name}); "
                    "run 'bench data fetch stl10' or pass --root"
                )
            size = path.stat().st_size
            if size == 0 or size % IMAGE_BYTES:
                raise DatasetError(
                    f"{path}: {size} bytes is not a whole number of 96x96 RGB images ({IMAGE_BYTES} bytes each): "
                    "the file is truncated or not STL-10; run 'bench data fetch stl10 --force'"
                )
            self.counts.append(size // IMAGE_BYTES)
        self.starts = np.cumsum([0] + self.counts)
        self._arrays: list[np.ndarray] | None = None
        for stem, path in zip(self.stems, self.paths) if self.decode_check else ():
            self.gray += [f"{stem}/{j:05d}" for j in file_fact(path, "gray_v1", lambda p=path: gray_indices(p))]

    def __getstate__(self):  # DataLoader workers reopen the memory maps instead of copying them
        return {**self.__dict__, "_arrays": None}

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return k, i - int(self.starts[k])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def image_id(self, i: int) -> str:
        k, j = self._locate(i)
        return f"{self.stems[k]}/{j:05d}"

    def load(self, i: int) -> Tensor:
        if self._arrays is None:
            self._arrays = [np.memmap(p, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE, SIDE) for p in self.paths]
        k, j = self._locate(i)
        return torch.from_numpy(np.ascontiguousarray(self._arrays[k][j].transpose(0, 2, 1)))  # column-major -> (3, H, W)

    def md5s(self) -> list[str]:
        from bench.datasets._scan import file_digest

        return [file_digest(p, "md5") for p in self.paths]

    def fingerprint_parts(self) -> list[str]:
        return [f"{p.name}:{p.stat().st_size}:{m}" for p, m in zip(self.paths, self.md5s())]

    def short_sides(self) -> list[int]:
        return [SIDE] * len(self)

    def image_shapes(self) -> list[tuple[int, int]]:
        return [(SIDE, SIDE)] * len(self)

    def check_official(self) -> tuple[bool | None, str]:
        pinned = dict(self.card.extra.get("file_md5", {}))
        bad = [p.name for p, m in zip(self.paths, self.md5s()) if pinned.get(p.name) != m]
        if bad:
            return False, f"MD5 of {', '.join(bad)} differs from the official file (pinned by torchvision)"
        for stem, n in zip(self.stems, self.counts):
            want = int(self.card.images.get(stem, 0))
            if n != want:
                return False, f"{stem}_X.bin holds {n} images, the official file {want}"
        return True, f"MD5 of {', '.join(p.name for p in self.paths)} matches the official files (pinned by torchvision)"


@DATASETS.register("stl10_unlabeled", "STL-10 with the 100,000 unlabeled images added to training (test: 8,000)")
class STL10Unlabeled(STL10):
    name = "stl10_unlabeled"
    with_unlabeled = True
