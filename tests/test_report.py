"""bench report: golden tables from a fixed store, escaping, separation of incomparable results, grids."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _result_store import EVIL, HASH_B, IDS, make_store
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.report import ReportError, build_report, plots, write_report
from bench.report.figures import pick_grid_images
from bench.report.html import render_html
from bench.report.markdown import render_markdown

GOLDEN_MD_ROWS = [
    "| method | seed | psnr ↑ (dB) | ssim ↑ | trained on | source | images | train time | recipe | predicted | date | commit |",
    "|---|---:|---:|---:|---|---|---:|---:|---|---|---|---|",
    "| kmeans32 | 0 | **23.25 ± 0.50** | 0.9103 | toy | trained here | 5 | 75 s | cpu · 40 steps × 8 | whole | 2026-01-02 | 01234567 |",
    "| gray | 0 | 22.50 ± 0.50 | **0.9400** | — | no training | 5 | no training | cpu · no training | whole | 2026-01-02 | 01234567 |",
    r"| \<script\>alert(1)\</script\> | 0 | 12.00 | 0.5000 | — | no training | 5 | no training | cpu · no training | whole | 2026-01-02 | 01234567 |",
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    make_store(root)
    return root


def test_golden_markdown_rows(store, tmp_path):
    rep = write_report(store, tmp_path / "out", formats=["md"])
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    lines = text.splitlines()
    start = lines.index(GOLDEN_MD_ROWS[0])
    assert lines[start : start + len(GOLDEN_MD_ROWS)] == GOLDEN_MD_ROWS
    assert "## toy · test" in text and "variant" not in text
    assert not (tmp_path / "out" / "index.html").exists()
    # every picture is linked from the Markdown and exists
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", text)
    assert {Path(p).name.split("-")[0] for p in links} == {"grid", "dist", "losses"}
    assert all((tmp_path / "out" / p).stat().st_size > 1000 for p in links)
    assert len(rep.sections) == 1 and len(rep.sections[0].table.rows) == 3


def test_table_model_bold_and_sort_keys(store, tmp_path):
    table = build_report(store, tmp_path / "out", pictures=False).sections[0].table
    keys = [h.key for h in table.headers]
    psnr, ssim = keys.index("metric:psnr"), keys.index("metric:ssim")
    by_method = {row[0].text: row for row in table.rows}
    assert by_method["kmeans32"][psnr].sort == pytest.approx(23.25) and by_method["kmeans32"][psnr].bold
    assert [m for m, r in by_method.items() if r[ssim].bold] == ["gray"]
    assert "95% CI [22.75, 23.75]" in by_method["kmeans32"][psnr].title
    assert table.headers[psnr].title.startswith("higher is better")


def test_lower_is_better_and_unavailable_metric(tmp_path):
    root = tmp_path / "results"
    extra = {"ciede2000": {"mean": 5.0, "n": 5, "higher_is_better": False, "per_image": True, "unit": ""},
             "colorfulness": {"mean": 30.0, "n": 5, "higher_is_better": None, "per_image": True, "unit": ""},
             "is": {"available": False, "reason": "Inception weights not found at /nowhere/weights.pth", "higher_is_better": True,
                    "per_image": False}}
    make_store(root, methods=("gray",), extra_metrics=extra)
    paths = make_store(root, methods=("kmeans32",), extra_metrics={**extra, "ciede2000": {**extra["ciede2000"], "mean": 4.0},
                                                                  "colorfulness": {**extra["colorfulness"], "mean": 40.0}})
    assert paths
    table = build_report(root, tmp_path / "out", pictures=False).sections[0].table
    keys = [h.key for h in table.headers]
    assert keys[2:5] == ["metric:psnr", "metric:ssim", "metric:is"]  # NTIRE's order first
    de = keys.index("metric:ciede2000")
    assert table.headers[de].text.startswith("ciede2000 ↓")
    best = [row[0].text for row in table.rows if row[de].bold]
    assert best == ["kmeans32"]  # 4.0 < 5.0 and lower is better
    cf = keys.index("metric:colorfulness")  # no better direction: no arrow, nothing bold
    assert table.headers[cf].text == "colorfulness" and not any(row[cf].bold for row in table.rows)
    cell = table.rows[0][keys.index("metric:is")]
    assert cell.text == "n/a" and cell.note and "Inception weights not found" in table.notes[cell.note - 1]
    md = render_markdown(build_report(root, tmp_path / "out", pictures=False))
    assert "n/a [1]" in md and "[1] is: Inception weights not found" in md


def test_escaping_in_html_and_markdown(store, tmp_path):
    rep = write_report(store, tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own sorting script
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert EVIL not in md
    assert rep.sections[0].figures  # the evil name also made it into a picture, as plain text
    # a result whose error text carries markup is listed as text among the failed runs
    bad = store / "eval" / "toy" / "test" / "broken-s0.json"
    bad.write_text(json.dumps({"schema_version": 1, "status": "failed", "method": "broken", "dataset": {"name": "toy"},
                               "split": "test", "seed": 0, "stage": "train", "error": "ValueError: <img src=x onerror=alert(2)>"}))
    page = render_html(build_report(store, tmp_path / "out", pictures=False))
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'id="failed"' in page


def test_incomparable_results_get_separate_tables(tmp_path):
    root = tmp_path / "results"
    make_store(root, methods=("gray", "kmeans32"))
    # a newer result on the same dataset name and split, but other content (another content hash)
    other = make_store(tmp_path / "other", methods=("gray",), content_hash=HASH_B)
    target = root / "eval" / "toy" / "test"
    moved = json.loads(other["gray"].read_text())
    moved["method"] = "kmeans32-newdata"
    moved["created"] = "2026-02-01T00:00:00+00:00"
    (target / "kmeans32-newdata-s0.json").write_text(json.dumps(moved))
    rep = build_report(root, tmp_path / "out", pictures=False)
    assert [s.group.title for s in rep.sections] == ["toy · test — variant 1 of 2", "toy · test — variant 2 of 2"]
    newer, older = rep.sections
    assert [r[0].text for r in newer.table.rows] == ["kmeans32-newdata", "gray"]  # gray placeholder: not run here
    assert newer.table.rows[1][2].text == "not run" and "bench run --methods gray" in newer.table.notes[0]
    assert sorted(r[0].text for r in older.table.rows) == ["gray", "kmeans32"]
    md = render_markdown(rep)
    assert md.count("content hash differ") == 2 and "must not be compared across them" in md


def test_schema_version_and_unofficial_data_are_flagged(tmp_path):
    """Results of schema 1 (written before results had identities) are still read, in a table of their own
    that says so."""
    root = tmp_path / "results"
    make_store(root, methods=("gray",), official=False, schema=1)
    p = make_store(tmp_path / "v2", methods=("kmeans32",), official=False)["kmeans32"]
    (root / "eval" / "toy" / "test" / p.name).write_text(p.read_text())
    rep = build_report(root, tmp_path / "out", pictures=False)
    assert len(rep.sections) == 2
    md = render_markdown(rep)
    assert "schema version differ" in md and md.count("Not the official dataset") == 2
    assert md.count("Results of schema 1") == 1 and "whole (schema 1)" in md


def test_dataset_filter_and_unknown_dataset(tmp_path):
    root = tmp_path / "results"
    make_store(root, methods=("gray",))
    make_store(root, methods=("gray", "kmeans32"), dataset="toy2")
    rep = build_report(root, tmp_path / "out", datasets=["toy2"], pictures=False)
    assert [s.group.dataset for s in rep.sections] == ["toy2"]
    with pytest.raises(ReportError, match="no results for dataset div2k.*toy, toy2"):
        build_report(root, tmp_path / "out", datasets=["div2k"], pictures=False)


def test_grid_rows_columns_and_image_choice(store, tmp_path):
    rep = write_report(store, tmp_path / "out", formats=["html"])
    grid = next(f for f in rep.sections[0].figures if f.kind == "grid")
    assert grid.columns == ["grayscale input", "kmeans32", "gray", EVIL, "ground truth"]  # leaderboard order
    assert len(grid.rows) == 4 and set(grid.rows) <= set(IDS)
    assert grid.rows == pick_grid_images(IDS, None)[0]  # fixed seed: the same choice every time
    with Image.open(tmp_path / "out" / grid.path) as im:
        size = im.size
    # the figure is one cell per (image, column): its size follows the grid's shape
    assert size == plots.grid_pixels(4, 5, 16)
    rep = write_report(store, tmp_path / "out2", formats=["md"], images=["img3", "0"])
    grid = next(f for f in rep.sections[0].figures if f.kind == "grid")
    assert grid.rows == ["img3", "img0"]
    with Image.open(tmp_path / "out2" / grid.path) as im:
        assert im.size == plots.grid_pixels(2, 5, 16)
    with pytest.raises(ReportError, match="--images: nope matched no stored sample"):
        write_report(store, tmp_path / "out3", images=["nope"])


def test_pick_grid_images():
    common = [f"id{k}" for k in range(10)]
    chosen, unmatched = pick_grid_images(common, None, n=4)
    assert len(chosen) == 4 and chosen == sorted(chosen, key=common.index) and not unmatched
    assert pick_grid_images(common, None, n=4) == (chosen, [])
    assert pick_grid_images(common, None, n=40)[0] == common
    assert pick_grid_images(common, ["id7", "2", "zz", "id7"]) == (["id7", "id2"], ["zz"])


def test_cli_report_writes_both_formats(store, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["--results", str(store), "report", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (out / "leaderboard.md").exists() and (out / "index.html").exists()
    assert "1 table(s), 3 row(s)" in r.output
    r = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "empty"), "--out", str(out)])
    assert r.exit_code == 1 and "no results under" in r.output
    r = CliRunner().invoke(main, ["report", "--results", str(store), "--out", str(out), "--format", "pdf"])
    assert r.exit_code == 2 and "'--format': unknown pdf" in r.output  # a usage error


def test_report_from_a_real_run(folder_dataset, results, tmp_path):
    """End to end on what the runner writes: samples carry their ground truth, and the grid's grayscale
    column is exactly what the gray method outputs."""
    import numpy as np

    from bench.report.figures import _grayscale, _read_png

    r = CliRunner().invoke(main, ["run", "--methods", "gray", "--dataset", "folder", "--root", str(folder_dataset), "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    [res_path] = (results / "eval" / "folder" / "test").glob("gray-s0-*.json")
    res = json.loads(res_path.read_text())
    assert res["samples"] and all((res_path.parent / s["reference"]).exists() for s in res["samples"])
    for s in res["samples"]:
        truth = _read_png(res_path.parent / s["reference"])
        assert np.array_equal(_grayscale(truth), _read_png(res_path.parent / s["file"]))
    rep = write_report(results, tmp_path / "out")
    grid = next(f for f in rep.sections[0].figures if f.kind == "grid")
    assert grid.columns == ["grayscale input", "gray", "ground truth"]
    assert len(grid.rows) == min(4, len(res["samples"])) and (tmp_path / "out" / grid.path).exists()


def test_validation_curves_are_drawn_under_the_loss_curves(store, tmp_path, monkeypatch):
    """A run's validation.csv (held-out training images) gets a row of PSNR / SSIM panels in the losses
    figure, and the caption says what they are; runs without one are drawn as before."""
    run_dir = Path(json.loads(next(store.glob("eval/toy/test/kmeans32-s0-*[0-9a-f].json")).read_text())["train"]["run_dir"])
    (run_dir / "validation.csv").write_text("step,val_psnr,val_ssim\n10,18.5,0.81\n20,19.25,0.84\n40,19.75,0.86\n")
    drawn = {}
    real = plots.loss_curves
    monkeypatch.setattr(plots, "loss_curves", lambda runs, path, validation=None: drawn.update(
        titles=real(runs, path, validation), validation=validation) or drawn["titles"])
    rep = write_report(store, tmp_path / "out", formats=["md"])
    losses = next(f for f in rep.sections[0].figures if f.kind == "losses")
    assert drawn["titles"] == ["kmeans32", "validation PSNR (dB)", "validation SSIM"]
    assert list(drawn["validation"]["kmeans32"]["val_psnr"]) == [18.5, 19.25, 19.75]
    assert "held out" in losses.caption and "not the test split" in losses.caption
    assert (tmp_path / "out" / losses.path).stat().st_size > 1000
