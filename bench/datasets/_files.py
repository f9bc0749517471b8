"""The shared base of loaders whose images are files: list, scan once (cached), skip or refuse bad files."""

from __future__ import annotations

import abc
import os
from pathlib import Path

from torch import Tensor

from bench.datasets.base import BadImage, ImageSet, file_fingerprint
from bench.datasets.io import IMAGE_SUFFIXES, read_image

DEFAULT_MIN_SIDE = 32  # smaller images are skipped: too small for an 11-px SSIM window and a few poolings


def list_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively, sorted; hidden files and folders are
    not looked at (they hold our own markers and OS litter such as .DS_Store)."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            (images if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p)
    return sorted(images), sorted(others)


class FileImageSet(ImageSet):
    """A split made of image files under ``self.root``. Subclasses give :meth:`split_files`; this class
    scans them (full decode, cached by file fingerprint), leaves out bad ones (``on_bad_image='skip'``,
    each named with its reason in ``skipped``) or refuses the split naming them all (``'error'``)."""

    @abc.abstractmethod
    def split_files(self) -> tuple[list[Path], list[Path]]:
        """(image files of this split, non-image files found beside them), both under ``self.root``."""

    def __init__(self, split: str, root=None, **kwargs):
        super().__init__(split, root, **kwargs)
        from bench.datasets._scan import scan_images

        candidates, others = self.split_files()
        self.ignored = [p.relative_to(self.root).as_posix() for p in others]
        self.files: list[Path] = []
        self._shapes: list[tuple[int, int]] | None = []
        if not self.decode_check:
            self.files, self._shapes = candidates, None
            return
        min_side = int(self.card.extra.get("min_side", DEFAULT_MIN_SIDE))
        scan = scan_images(candidates, self.root, min_side, desc=f"{self.name}/{split}")
        for path in candidates:
            rel = path.relative_to(self.root).as_posix()
            entry = scan[rel]
            if not entry["ok"]:
                self.skipped.append({"id": rel, "reason": entry["reason"]})
                continue
            self.files.append(path)
            self._shapes.append((entry["height"], entry["width"]))  # as decoded: after EXIF orientation
            if entry["gray"]:
                self.gray.append(rel)
            for c in entry["conversions"]:
                self.converted[c] = self.converted.get(c, 0) + 1
        if not self.files and self.skipped:
            raise BadImage(f"{self.name}/{split}: none of the {len(self.skipped)} image file(s) under {self.root} can be used; "
                           f"first: {self.skipped[0]['id']}: {self.skipped[0]['reason']}")
        if self.skipped and self.on_bad_image == "error":
            listing = "; ".join(f"{s['id']}: {s['reason']}" for s in self.skipped[:20])
            more = f"; ... and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
            raise BadImage(
                f"{self.name}/{split}: {len(self.skipped)} bad file(s) under {self.root}: {listing}{more}. "
                "Remove or replace them, or pass --on-bad-image skip to leave them out (they are then named in the result file)"
            )

    def __len__(self) -> int:
        return len(self.files)

    def image_id(self, i: int) -> str:
        return self.files[i].relative_to(self.root).as_posix()

    def load(self, i: int) -> Tensor:
        return read_image(self.files[i])

    def fingerprint_parts(self) -> list[str]:
        return [file_fingerprint(p, self.root) for p in self.files]

    def short_sides(self) -> list[int] | None:
        return None if self._shapes is None else [min(s) for s in self._shapes]

    def image_shapes(self) -> list[tuple[int, int]] | None:
        return None if self._shapes is None else list(self._shapes)
