"""``folder``: any directory of images (recursive), split deterministically by a hash of each path."""

from __future__ import annotations

from pathlib import Path

from bench.datasets._files import FileImageSet, list_files
from bench.datasets.base import ALL, DATASETS, DatasetNotFound, hash_split
from bench.datasets.io import IMAGE_SUFFIXES


@DATASETS.register("folder", "Any folder of images (--root DIR); split by a hash of each relative path")
class Folder(FileImageSet):
    name = "folder"
    whole_set = True  # split ``all``: every image of the folder, whatever the hash split would give

    def __init__(self, split: str, root=None, **kwargs):
        if root is None:
            raise DatasetNotFound("folder: no --root given; pass --root DIR, a folder of .png/.jpg/.webp/.bmp/.tiff images")
        super().__init__(split, root, **kwargs)

    def split_files(self) -> tuple[list[Path], list[Path]]:
        if not self.root.is_dir():
            raise DatasetNotFound(f"folder: {self.root} is not a directory; pass --root DIR, a folder of images")
        test_fraction = float(self.card.splits.get("test_fraction", 0.2))
        images, others = list_files(self.root)
        if not images:
            raise DatasetNotFound(f"folder: no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        mine = lambda p: self.split == ALL or hash_split(p.relative_to(self.root).as_posix(), test_fraction) == self.split
        files = [p for p in images if mine(p)]
        if not files:
            raise DatasetNotFound(
                f"folder: the {self.split} split of {self.root} is empty ({len(images)} images in all, "
                f"test fraction {test_fraction}); add images"
            )
        return files, [p for p in others if mine(p)]
