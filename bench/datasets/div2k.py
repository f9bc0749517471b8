"""``div2k``: DIV2K high-resolution images, as used by the NTIRE 2019 colourisation challenge.

Train on DIV2K_train_HR (800 PNGs, 0001-0800), evaluate on DIV2K_valid_HR (100 PNGs, 0801-0900), each
image whole ("full" evaluation protocol). Layout under the root::

    <root>/DIV2K_train_HR/0001.png ...     <root>/DIV2K_valid_HR/0801.png ...

No per-file checksums are published, so a split counts as official when ``bench data fetch div2k``
installed it from an archive that matched the published SHA-256 (the marker it wrote still matches
every file's name and size) and it holds the official number of images.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets._fetch import card_downloads, check_installed
from bench.datasets._files import FileImageSet, list_files
from bench.datasets.base import DATASETS, DatasetNotFound

FOLDERS = {"train": "DIV2K_train_HR", "test": "DIV2K_valid_HR"}


@DATASETS.register("div2k", "DIV2K HR photos, 800 train / 100 valid 2K PNGs (NTIRE 2019 colourisation protocol)")
class DIV2K(FileImageSet):
    name = "div2k"

    @property
    def folder(self) -> Path:
        return self.root / FOLDERS[self.split]

    def split_files(self) -> tuple[list[Path], list[Path]]:
        if not self.folder.is_dir():
            raise DatasetNotFound(
                f"div2k: no DIV2K at {self.root} (expected {FOLDERS[self.split]}/); "
                "run 'bench data fetch div2k' or pass --root"
            )
        images, others = list_files(self.folder)
        if not images:
            raise DatasetNotFound(f"div2k: {self.folder} holds no images; run 'bench data fetch div2k --force' to reinstall it")
        return images, others

    def check_official(self) -> tuple[bool | None, str]:
        spec = next(d for d in card_downloads(self.card) if d.provides == FOLDERS[self.split])
        ok, why = check_installed(self.folder, spec)
        expected = int(self.card.images.get(self.split, 0))
        if ok and len(self) != expected:
            return False, f"{len(self)} usable images, the official split has {expected}"
        return ok, why
