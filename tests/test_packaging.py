"""A normal install finds the recipes and dataset cards: they live inside the package and ship in the wheel;
a missing recipe or card is a clear error, never an empty default. (.ci/wheel-check installs the wheel
apart from the checkout and runs it from another folder.)"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bench
from bench.config import ConfigError, DatasetCard, datasets_dir, recipes_dir
from bench.datasets import DATASETS
from bench.datasets.base import ImageSet

PACKAGE = Path(bench.__file__).resolve().parent
REPO = PACKAGE.parent


def test_recipes_and_cards_live_inside_the_package(monkeypatch):
    monkeypatch.delenv("BENCH_RECIPES", raising=False)
    monkeypatch.delenv("BENCH_CARDS", raising=False)
    assert recipes_dir() == PACKAGE / "methods" / "recipes" and datasets_dir() == PACKAGE / "datasets" / "cards"
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert (datasets_dir() / f"{cls.data_name or cls.name}.yaml").is_file(), name
    assert not (REPO / "methods").exists() and not (REPO / "datasets").exists()  # one place to read and edit them


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


@pytest.mark.skipif(_setuptools_major() < 77, reason="building the wheel offline needs setuptools >= 77 (pyproject's SPDX license) here")
def test_the_wheel_holds_every_recipe_and_card(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    [wheel] = tmp_path.glob("colorbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO).as_posix() for p in [*recipes_dir().rglob("*.yaml"), *datasets_dir().glob("*.yaml")]}
    assert shipped and shipped <= names, sorted(shipped - names)


def test_a_missing_card_is_an_error_not_an_empty_card(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CARDS", str(tmp_path))
    with pytest.raises(ConfigError) as exc:
        DatasetCard.load("samples")
    assert str(tmp_path / "samples.yaml") in str(exc.value) and "$BENCH_CARDS" in str(exc.value)
    from click.testing import CliRunner

    from bench.cli import main

    r = CliRunner().invoke(main, ["--results", str(tmp_path / "r"), "run", "--methods", "gray", "--dataset", "samples"])
    assert r.exit_code == 2 and "no dataset card for 'samples'" in r.output and "Traceback" not in r.output


def test_a_missing_recipe_is_an_error(tmp_path, monkeypatch):
    from bench.recipes import load_recipe
    from bench.registry import UnknownName

    monkeypatch.setenv("BENCH_RECIPES", str(tmp_path))
    with pytest.raises(UnknownName, match="unknown method 'kmeans32'"):
        load_recipe("kmeans32")


def test_a_plugin_dataset_carries_its_own_card():
    class Checker(ImageSet):
        name, needs_root = "checker-test", False
        card_data = {"short_side": None, "eval": {"mode": "full"}}

        def __len__(self):
            return 1

        def image_id(self, i):
            return "c0"

        def load(self, i):
            raise AssertionError("not needed")

    assert Checker("test").card.short_side is None and Checker("test").identity()["eval_protocol"] == {"mode": "full", "short_side": None}

    class NoCard(Checker):
        name, card_data = "nocard-test", None

    with pytest.raises(ConfigError, match="card_data"):
        NoCard("test")
