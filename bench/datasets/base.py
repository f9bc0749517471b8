"""What every dataset loader gives: a split of full-size uint8 RGB images with stable ids.

Views built on top (:mod:`bench.datasets.views`) turn a split into training crops or into the fixed
evaluation protocol of the dataset's card; loaders never crop.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.config import DatasetCard
from bench.registry import Registry

SPLITS = ("train", "test")
ALL = "all"  # every image of the dataset as one set: for test-only sets, and models trained elsewhere
BAD_IMAGE_POLICIES = ("skip", "error")


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
    """One split of a dataset. ``load(i)`` is a (3, H, W) uint8 RGB tensor of the full image.

    Loaders that read files fill in what they found on the way: ``skipped`` (bad files left out, each with
    its reason), ``ignored`` (files without an image suffix), ``gray`` (ids of truly grayscale images),
    ``converted`` (how many images needed each conversion), and say through :meth:`official` whether the
    split is the official dataset. All of it is part of :meth:`identity`, hence of every result file.
    """

    name: ClassVar[str] = ""
    data_name: ClassVar[str] = ""  # card and data folder, when several registered names share one dataset
    needs_root: ClassVar[bool] = True
    #: True for loaders that list split ``all`` (every image) themselves; for the others :func:`open_split`
    #: joins the train and test splits.
    whole_set: ClassVar[bool] = False
    # load(i) reads stored uint8 pixels through a memory map (no decoding): the pixel cache would be a copy.
    memory_mapped: ClassVar[bool] = False
    #: A plugin without a card file may carry its card here (same keys as ``bench/datasets/cards/*.yaml``).
    card_data: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, split: str, root: str | os.PathLike | None = None, *, on_bad_image: str = "skip", decode_check: bool = True):
        """``on_bad_image``: ``skip`` leaves bad files out (named in ``skipped``), ``error`` refuses the
        split. ``decode_check=False`` lists files without decoding them (a quick inventory)."""
        if split not in SPLITS and not (split == ALL and self.whole_set):
            raise DatasetError(f"{self.name}: unknown split {split!r}; choices: {', '.join((*SPLITS, ALL))}")
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise DatasetError(f"unknown bad-image policy {on_bad_image!r}; choices: {', '.join(BAD_IMAGE_POLICIES)}")
        self.split = split
        self.on_bad_image = on_bad_image
        self.decode_check = decode_check
        self.card = DatasetCard.load(self.data_name or self.name, type(self).card_data)
        self.root = default_root(self.data_name or self.name, root) if self.needs_root else None
        self.skipped: list[dict[str, str]] = []
        self.ignored: list[str] = []
        self.gray: list[str] = []
        self.converted: dict[str, int] = {}
        self._identity: dict[str, Any] | None = None

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

    def official(self) -> tuple[bool | None, str]:
        """(True, why) when the split is verifiably the official data, (False, why not), or (None, why
        it cannot be told). Computed once per instance."""
        if getattr(self, "_official", None) is None:
            self._official = self.check_official()
        return self._official

    def check_official(self) -> tuple[bool | None, str]:
        """Loaders with a published reference override this (see :meth:`official`)."""
        return None, "no published reference to compare with"

    def short_sides(self) -> list[int] | None:
        """The shorter side of every image when known without decoding (None otherwise)."""
        return None

    def image_shapes(self) -> list[tuple[int, int]] | None:
        """(height, width) of every image as :meth:`load` gives it, when known without decoding (None
        otherwise); the pixel cache announces its size from them before it decodes anything."""
        return None

    def identity(self) -> dict[str, Any]:
        """What results record about the data: name, split, size, content hash, eval protocol, whether it
        is the official dataset, and every file skipped or converted on the way."""
        if self._identity is None:
            digest = hashlib.sha256("\n".join(self.fingerprint_parts()).encode()).hexdigest()
            official, note = self.official()
            self._identity = {
                "name": self.name,
                "split": self.split,
                "n_images": len(self),
                "content_hash": digest,
                "root": str(self.root) if self.root else None,
                "eval_protocol": self.card.eval_protocol(),
                "official": official,
                "official_note": note,
                "skipped": list(self.skipped),
                "ignored": list(self.ignored),
                "gray": list(self.gray),
                "converted": dict(sorted(self.converted.items())),
            }
        return dict(self._identity)

    def report(self, crop: int | None = None, limit: int = 10) -> list[str]:
        """Lines for the terminal: what was skipped, ignored, converted or is gray, and official status.
        ``crop``: the training crop size when the split is read for training (images upscaled to reach
        it are counted); without it, images upscaled by the evaluation protocol are counted."""
        label = f"{self.name}/{self.split}"
        lines: list[str] = []

        def names(items: list[str]) -> str:
            more = f", ... and {len(items) - limit} more (all listed in the result file)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        if self.skipped:
            lines.append(f"{label}: skipped {len(self.skipped)} bad file(s) of {len(self) + len(self.skipped)}:")
            lines += [f"  {s['id']}: {s['reason']}" for s in self.skipped[:limit]]
            if len(self.skipped) > limit:
                lines.append(f"  ... and {len(self.skipped) - limit} more (all listed in the result file)")
        if self.ignored:
            lines.append(f"{label}: ignored {len(self.ignored)} file(s) without an image suffix: {names(self.ignored)}")
        if self.converted:
            lines.append(f"{label}: converted on reading: " + ", ".join(f"{n} x {k}" for k, n in sorted(self.converted.items())))
        if self.gray:
            why = " (colour metrics say nothing about them)" if not crop else " (they teach the method that no colour is right)"
            lines.append(f"{label}: {len(self.gray)} truly grayscale image(s){why}: {names(self.gray)}")
        sides = self.short_sides()
        if sides:
            short = self.card.short_side
            need = [(max(crop, short or 0), "training size (crop or the card's short_side)")] if crop else []
            if short and not crop:  # crop given: the split is read for training
                need.append((short, "evaluation scale (short_side)"))
            for size, what in need:
                n = sum(s < size for s in sides)
                if n:
                    lines.append(f"{label}: {n} image(s) have a shorter side below the {size}-px {what}: upscaled (antialiased)")
        official, note = self.official()
        if official is False:
            lines.append(f"WARNING {label}: not the official dataset ({note}); its results are marked official=false "
                         "and are not comparable with published numbers")
        return lines


#: Every dataset loader by name; each loader module registers itself (``@DATASETS.register("div2k")``).
DATASETS: Registry[type[ImageSet]] = Registry("dataset", "colorbench.datasets", base=ImageSet)


def open_split(cls: type[ImageSet], split: str, root: str | os.PathLike | None = None, **options: Any) -> ImageSet:
    """``cls(split, root, **options)``, leaving out options a plugin's ``__init__`` does not accept. Split
    ``all`` is every image as one set: the loader's own when it lists one, else train and test joined."""
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    if split == ALL and not cls.whole_set:
        return JoinedSplits([cls(s, root, **options) for s in SPLITS])
    return cls(split, root, **options)


class JoinedSplits(ImageSet):
    """Several splits of one dataset read as one set (split ``all``), with everything each part found."""

    def __init__(self, parts: list[ImageSet]):
        first = parts[0]
        self.name, self.data_name, self.needs_root = first.name, first.data_name, first.needs_root
        self.split, self.on_bad_image, self.decode_check = ALL, first.on_bad_image, first.decode_check
        self.card, self.root, self.parts = first.card, first.root, parts
        self.index = [(k, i) for k, part in enumerate(parts) for i in range(len(part))]
        ids = [part.image_id(i) for part in parts for i in range(len(part))]
        dup = len(ids) - len(set(ids))
        self.prefix = dup > 0  # ids must stay unique across the joined splits
        self.skipped = [s for part in parts for s in part.skipped]
        self.ignored = [s for part in parts for s in part.ignored]
        self.gray = [self._id(k, g) for k, part in enumerate(parts) for g in part.gray]
        self.converted = {}
        for part in parts:
            for key, n in part.converted.items():
                self.converted[key] = self.converted.get(key, 0) + n
        self._identity = None

    def _id(self, k: int, image_id: str) -> str:
        return f"{self.parts[k].split}/{image_id}" if self.prefix else image_id

    def __len__(self) -> int:
        return len(self.index)

    def image_id(self, i: int) -> str:
        k, j = self.index[i]
        return self._id(k, self.parts[k].image_id(j))

    def load(self, i: int) -> Tensor:
        k, j = self.index[i]
        return self.parts[k].load(j)

    def fingerprint_parts(self) -> list[str]:
        return [f"{part.split}|{f}" for part in self.parts for f in part.fingerprint_parts()]

    def check_official(self) -> tuple[bool | None, str]:
        verdicts = [part.official() for part in self.parts]
        notes = "; ".join(f"{part.split}: {note}" for part, (_, note) in zip(self.parts, verdicts))
        if any(ok is False for ok, _ in verdicts):
            return False, notes
        return (True if all(ok for ok, _ in verdicts) else None), notes

    def short_sides(self) -> list[int] | None:
        sides = [part.short_sides() for part in self.parts]
        return None if any(s is None for s in sides) else [x for s in sides for x in s]


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


class SplitPart(ImageSet):
    """Some images of a split (by index), as a split of its own: the training part or the held-out validation
    part of a training split, or the images of a test split that have outputs to score (``bench score``).

    It shares the split's card, root and notes (skipped, converted, gray files); its content hash is that
    of the split plus the ids it keeps, so what is cached per split (Zhang's prior) is cached per part.
    """

    def __init__(self, base: ImageSet, indices: list[int], role: str):  # not ImageSet.__init__: nothing to scan again
        self.base, self.indices, self.role = base, list(indices), role
        self.name, self.data_name, self.needs_root = base.name, base.data_name, base.needs_root
        self.split, self.card, self.root = base.split, base.card, base.root
        self.on_bad_image, self.decode_check = base.on_bad_image, base.decode_check
        self.skipped, self.ignored, self.gray, self.converted = base.skipped, base.ignored, base.gray, base.converted
        self._identity = None

    def __len__(self) -> int:
        return len(self.indices)

    def image_id(self, i: int) -> str:
        return self.base.image_id(self.indices[i])

    def load(self, i: int) -> Tensor:
        return self.base.load(self.indices[i])

    def fingerprint_parts(self) -> list[str]:
        return [f"{self.role} of {self.base.identity()['content_hash']}", *(self.image_id(i) for i in range(len(self)))]

    def check_official(self) -> tuple[bool | None, str]:
        official, note = self.base.official()
        return (False if official else official), f"the {self.role} part of the split ({note})"

    def short_sides(self) -> list[int] | None:
        sides = self.base.short_sides()
        return None if sides is None else [sides[i] for i in self.indices]
