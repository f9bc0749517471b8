"""``samples``: colour photographs that ship inside installed packages, so everything runs offline.

scikit-image's data folder and matplotlib's sample data hold a handful of real colour photos. They are
split by photo (no photo in both splits); motorcycle_right is left out because it is the same scene as
motorcycle_left. Synthetic images (colour wheels, logos) and grayscale ones are not used.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from torch import Tensor

from bench.datasets.base import DATASETS, DatasetNotFound, ImageSet
from bench.datasets.io import read_image

TRAIN = ("astronaut", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina")
TEST = ("chelsea", "grace_hopper", "rocket")


def photo_paths() -> dict[str, Path]:
    import matplotlib
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    files = {
        "astronaut": sk / "astronaut.png",
        "coffee": sk / "coffee.png",
        "hubble_deep_field": sk / "hubble_deep_field.jpg",
        "ihc": sk / "ihc.png",
        "motorcycle_left": sk / "motorcycle_left.png",
        "retina": sk / "retina.jpg",
        "chelsea": sk / "chelsea.png",
        "rocket": sk / "rocket.jpg",
        "grace_hopper": mpl / "grace_hopper.jpg",
    }
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise DatasetNotFound(
            f"samples: photos missing from the installed packages: {', '.join(missing)}; "
            "reinstall scikit-image and matplotlib (pip install --force-reinstall scikit-image matplotlib)"
        )
    return files


@functools.lru_cache(maxsize=None)
def _load(path: str) -> Tensor:
    return read_image(path)  # a few MB in all: decoded once per process


@DATASETS.register("samples", "Colour photos shipped inside scikit-image and matplotlib (offline default)")
class Samples(ImageSet):
    name = "samples"
    needs_root = False

    def __init__(self, split: str, root=None, **kwargs):
        super().__init__(split, root, **kwargs)
        self.names = TRAIN if split == "train" else TEST
        self.paths = photo_paths()

    def __len__(self) -> int:
        return len(self.names)

    def image_id(self, i: int) -> str:
        return self.names[i]

    def load(self, i: int) -> Tensor:
        return _load(str(self.paths[self.names[i]]))

    def fingerprint_parts(self) -> list[str]:
        return [f"{n}:{hashlib.sha256(self.paths[n].read_bytes()).hexdigest()}" for n in self.names]

    def image_shapes(self) -> list[tuple[int, int]]:
        return [tuple(self.load(i).shape[-2:]) for i in range(len(self))]  # a few small photos, decoded once per process
