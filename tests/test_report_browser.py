"""The HTML report in a real browser: headless Chromium renders it, tables hold the expected rows,
sorting works, every picture loaded, a hostile method name stays text, and a screenshot is taken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _chromium import CANDIDATES, Chromium, find_chromium
from _result_store import EVIL, make_store
from bench.report import write_report

PAGE_STATE = """(() => {
  const tables = Array.from(document.querySelectorAll('table.sortable')).map(t => ({
    id: t.id,
    headers: Array.from(t.tHead.rows[0].cells).map(c => c.textContent),
    rows: Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map(c => c.textContent)),
  }));
  const images = Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  return {title: document.title, tables, images, scripts: document.scripts.length, width: document.documentElement.scrollWidth};
})()"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(f"no Chromium binary found (looked for {', '.join(CANDIDATES)} on PATH and $BENCH_CHROMIUM); "
                    "install Debian's package: apt-get install chromium")
    return binary


def test_report_in_headless_chromium(chromium, tmp_path):
    root = tmp_path / "results"
    make_store(root)
    out = tmp_path / "report"
    write_report(root, out, formats=["html"])
    with Chromium(chromium, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        state = browser.evaluate(PAGE_STATE)
        table = state["tables"][0]
        assert [r[0] for r in table["rows"]] == ["kmeans32", "gray", EVIL]  # the name shows as text, not markup
        assert table["headers"][:4] == ["method", "seed", "psnr ↑ (dB)", "ssim ↑"]
        assert table["rows"][0][2] == "23.25 ± 0.50" and table["rows"][1][3] == "0.9400"
        assert state["scripts"] == 1  # the page's own script only; nothing injected ran
        assert not [ev for ev in browser.events if ev.get("method") == "Page.javascriptDialogOpening"]
        assert len(state["images"]) == 3
        for img in state["images"]:
            assert img["complete"] and img["w"] > 0 and img["h"] > 0, f"picture did not load: {img}"
        assert state["width"] <= 1366, "the page scrolls sideways on a laptop-sized window"

        # sorting: PSNR heading sorts numbers (descending, then ascending), the method heading sorts text
        order = "Array.from(document.querySelectorAll('#table-0 tbody tr')).map(r => r.cells[0].textContent)"
        click = "document.querySelectorAll('#table-0 thead th')[{}].click()"
        browser.evaluate(click.format(2))
        assert browser.evaluate(order) == ["kmeans32", "gray", EVIL]
        browser.evaluate(click.format(2))
        assert browser.evaluate(order) == [EVIL, "gray", "kmeans32"]
        browser.evaluate(click.format(3))  # SSIM, descending
        assert browser.evaluate(order) == ["gray", "kmeans32", EVIL]
        browser.evaluate(click.format(2))
        browser.evaluate(click.format(2))
        shot = browser.screenshot(tmp_path / "report.png")
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[1] == 1366 and pixels.shape[0] > 768  # full page: tables and pictures below the fold
    assert pixels.std() > 10, "the screenshot is blank"
