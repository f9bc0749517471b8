"""``landscape``: Landscape Pictures (Kaggle "arnaud58/landscape-pictures", 4,319 JPGs of landscapes).

Kaggle needs an account, so there is no URL to fetch: ``bench data fetch landscape`` prints the Kaggle
CLI command and where to unpack. Any layout under the root works (files are found recursively). A file
is in the test split when a hash of its *name* falls in the first 10% of hash space: the split of a
file never changes when other files are added or removed, or when the folder is moved.

Kaggle publishes no checksum of the archive, so the content cannot be verified: a split is reported as
official=false when the total image count differs from 4,319, and official=null (unverifiable) otherwise.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets._files import FileImageSet, list_files
from bench.datasets.base import ALL, DATASETS, DatasetNotFound, hash_split


@DATASETS.register("landscape", "Landscape Pictures (Kaggle arnaud58/landscape-pictures, 4,319 JPGs); 90/10 split by file-name hash")
class Landscape(FileImageSet):
    name = "landscape"
    whole_set = True

    def split_files(self) -> tuple[list[Path], list[Path]]:
        if not self.root.is_dir():
            raise DatasetNotFound(
                f"landscape: no Landscape Pictures at {self.root}; run 'bench data fetch landscape' "
                "for the Kaggle download command, or pass --root"
            )
        images, others = list_files(self.root)
        if not images:
            raise DatasetNotFound(f"landscape: no images under {self.root}; run 'bench data fetch landscape' for instructions")
        self.total_files = len(images)
        fraction = float(self.card.splits.get("test_fraction", 0.1))
        mine = lambda p: self.split == ALL or hash_split(p.name, fraction) == self.split
        return [p for p in images if mine(p)], [p for p in others if mine(p)]

    def check_official(self) -> tuple[bool | None, str]:
        expected = int(self.card.images.get("total", 0))
        if self.total_files != expected:
            return False, f"{self.total_files} image files under {self.root}; the Kaggle dataset has {expected}"
        return None, f"{expected} image files as on Kaggle, but Kaggle publishes no checksum, so the content cannot be verified"
