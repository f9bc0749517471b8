"""``folder``: any directory of images (recursive), split deterministically by a hash of each path."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from bench.datasets import DATASETS
from bench.datasets.base import DatasetNotFound, ImageSet, file_fingerprint, hash_split
from bench.datasets.io import IMAGE_SUFFIXES, read_image


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@DATASETS.register("folder", "Any folder of images (--root DIR); split by a hash of each relative path")
class Folder(ImageSet):
    name = "folder"

    def __init__(self, split: str, root=None):
        if root is None:
            raise DatasetNotFound("folder: no --root given; pass --root DIR, a folder of .png/.jpg/.webp/.bmp/.tiff images")
        super().__init__(split, root)
        if not self.root.is_dir():
            raise DatasetNotFound(f"folder: {self.root} is not a directory; pass --root DIR, a folder of images")
        test_fraction = float(self.card.splits.get("test_fraction", 0.2))
        files = list_images(self.root)
        if not files:
            raise DatasetNotFound(f"folder: no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        self.files = [p for p in files if hash_split(p.relative_to(self.root).as_posix(), test_fraction) == split]
        if not self.files:
            raise DatasetNotFound(
                f"folder: the {split} split of {self.root} is empty ({len(files)} images in all, "
                f"test fraction {test_fraction}); add images"
            )

    def __len__(self) -> int:
        return len(self.files)

    def image_id(self, i: int) -> str:
        return self.files[i].relative_to(self.root).as_posix()

    def load(self, i: int) -> Tensor:
        return read_image(self.files[i])

    def fingerprint_parts(self) -> list[str]:
        return [file_fingerprint(p, self.root) for p in self.files]
