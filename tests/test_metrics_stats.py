"""Bootstrap intervals and the paired comparison (`bench compare`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.metrics.stats import Bootstrap, mean_ci, paired_comparison, source_images


def test_ci_contains_the_mean_and_narrows_as_n_grows() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        values = rng.normal(25, 3, n)
        lo, hi = mean_ci(values, Bootstrap(resamples=1000, seed=0))
        assert lo < values.mean() < hi
        widths.append(hi - lo)
        # and it is about the normal-theory interval +-1.96 sd / sqrt(n)
        assert hi - lo == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(n), rel=0.2)
    assert widths[0] > widths[1] > widths[2]


def test_ci_is_reproducible_and_configurable() -> None:
    values = np.random.default_rng(1).normal(0, 1, 100)
    assert mean_ci(values, Bootstrap(resamples=500, seed=3)) == mean_ci(values, Bootstrap(resamples=500, seed=3))
    assert mean_ci(values, Bootstrap(resamples=500, seed=3)) != mean_ci(values, Bootstrap(resamples=500, seed=4))
    assert mean_ci(values, Bootstrap(resamples=0)) is None
    assert mean_ci(np.zeros(0), Bootstrap()) is None
    assert mean_ci(np.full(7, 2.5), Bootstrap()) == [2.5, 2.5]


def test_tiles_of_one_photo_are_resampled_together() -> None:
    """16 tiles of each of 8 photos, tiles of a photo scoring alike: the interval over photos is about the
    interval of the 8 photo means (4x the naive one over 128 'independent' tiles), and contains the mean."""
    rng = np.random.default_rng(4)
    photo = rng.normal(22, 3, 8)
    values = np.repeat(photo, 16) + rng.normal(0, 0.1, 128)
    ids = [f"p{i}.png#r{t // 4}c{t % 4}" for i in range(8) for t in range(16)]
    clusters = source_images(ids)
    assert clusters.tolist() == np.repeat(np.arange(8), 16).tolist()
    assert source_images(["a.png", "b.png", "a.png#r0c0"]).tolist() == [0, 1, 0]
    boot = Bootstrap(resamples=2000, seed=0)
    naive, grouped = mean_ci(values, boot), mean_ci(values, boot, clusters)
    by_photo = mean_ci(values.reshape(8, 16).mean(1), boot)
    assert grouped[0] < values.mean() < grouped[1]
    assert (grouped[1] - grouped[0]) > 3 * (naive[1] - naive[0])
    assert grouped == pytest.approx(by_photo, rel=1e-6)  # equal tile counts: the mean of photo means
    # all-distinct clusters change nothing
    assert mean_ci(values, boot, np.arange(128)) == naive
    # a planted difference that only 2 photos carry is significant over 128 tiles, not over 8 photos
    b = values.copy()
    b[:32] -= 1.0
    assert paired_comparison("psnr", values, b, True, boot).significant
    grouped_test = paired_comparison("psnr", values, b, True, boot, clusters)
    assert not grouped_test.significant and grouped_test.wilcoxon_p > 0.05


def test_paired_test_finds_a_planted_1db_difference() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(22, 3, 48)  # per-image PSNR varies a lot between images ...
    better = base + 1.0 + rng.normal(0, 0.5, 48)  # ... but B is 1 dB better on each, give or take
    r = paired_comparison("psnr", base, better, higher_is_better=True, boot=Bootstrap(resamples=5000))
    assert r.significant and r.better == "b" and r.wilcoxon_p < 1e-6
    assert r.ci95[0] < -0.7 and r.ci95[1] > -1.3 and r.diff == pytest.approx(-1.0, abs=0.2)
    # An unpaired view of the same numbers could not tell: the two 95% intervals overlap.
    a_ci, b_ci = mean_ci(base, Bootstrap()), mean_ci(better, Bootstrap())
    assert a_ci[1] > b_ci[0]


def test_paired_test_finds_no_difference_between_a_method_and_itself() -> None:
    values = np.random.default_rng(3).normal(0.9, 0.05, 40)
    r = paired_comparison("ssim", values, values.copy(), higher_is_better=True, boot=Bootstrap())
    assert not r.significant and r.better is None and r.diff == 0 and r.wilcoxon_p == 1.0 and r.ci95 == [0.0, 0.0]


def test_paired_test_respects_lower_is_better() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(10, 2, 60)
    r = paired_comparison("ciede2000", a, a + 1 + rng.normal(0, 0.3, 60), higher_is_better=False, boot=Bootstrap())
    assert r.significant and r.better == "a"


def test_paired_noise_is_not_significant() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(22, 3, 50)
    r = paired_comparison("psnr", a, a + rng.normal(0, 0.5, 50), higher_is_better=True, boot=Bootstrap())
    assert not r.significant and r.wilcoxon_p > 0.05


# ---- bench compare on stored results -----------------------------------------------------------------


def write_result(results, method: str, psnr: np.ndarray, ids: list[str], content_hash: str = "abc", status: str = "ok") -> None:
    folder = results / "eval" / "photos" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"higher_is_better": True, "per_image": True, "mean": float(psnr.mean())}
    result = {"status": status, "method": method, "dataset": {"name": "photos", "content_hash": content_hash, "eval_protocol": {"mode": "full"}},
              "metrics": {"psnr": entry, "ssim": {**entry, "mean": 0.9}, "is": {"higher_is_better": True, "per_image": False, "mean": 3.0}}}
    (folder / f"{method}-s0.json").write_text(json.dumps(result))
    pd.DataFrame({"id": ids, "psnr": psnr, "ssim": np.clip(psnr / 30, 0, 1)}).to_csv(folder / f"{method}-s0.csv", index=False)


def compare(results, *args):
    return CliRunner().invoke(main, ["--results", str(results), "compare", *args], catch_exceptions=False)


def test_compare_command(tmp_path) -> None:
    rng = np.random.default_rng(6)
    ids = [f"img{i:03d}.png" for i in range(40)]
    base = rng.normal(22, 3, 40)
    write_result(tmp_path, "gray", base, ids)
    # "better" is stored in another order: pairing is by image id, not by row
    better = base + 1 + rng.normal(0, 0.4, 40)
    write_result(tmp_path, "better", better[::-1].copy(), ids[::-1])
    out = compare(tmp_path, "better", "gray", "--dataset", "photos", "--metric", "psnr")
    assert out.exit_code == 0, out.output
    assert "40 paired images" in out.output and "significant: better better" in out.output
    same = compare(tmp_path, "gray", "gray", "--dataset", "photos")
    assert same.exit_code == 0 and "identical" in same.output and "significant:" not in same.output
    assert "psnr" in same.output and "ssim" in same.output


def test_compare_refuses_what_cannot_be_paired(tmp_path) -> None:
    ids = [f"img{i}" for i in range(10)]
    write_result(tmp_path, "a", np.arange(10.0), ids)
    write_result(tmp_path, "other-data", np.arange(10.0), ids, content_hash="def")
    r = compare(tmp_path, "a", "other-data", "--dataset", "photos")
    assert r.exit_code == 1 and "different data" in r.output
    r = compare(tmp_path, "a", "missing", "--dataset", "photos")
    assert r.exit_code == 1 and "no result for missing on photos/test, seed 0" in r.output
    write_result(tmp_path, "b", np.arange(10.0) + 1, ids)
    r = compare(tmp_path, "a", "b", "--dataset", "photos", "--metric", "is")
    assert r.exit_code == 1 and "set-level" in r.output
