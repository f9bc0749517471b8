"""Figures the README quotes come from the files they quote: its CI leaderboard excerpt is the committed
baseline, rendered by .ci/readme_excerpt.py (`make ci-baseline` rewrites both)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _excerpt_module():
    spec = importlib.util.spec_from_file_location("readme_excerpt", REPO / ".ci" / "readme_excerpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_ci_excerpt_is_the_committed_baseline():
    excerpt = _excerpt_module()
    baseline = json.loads((REPO / excerpt.BASELINE).read_text())
    expected = excerpt.render(baseline)
    found = excerpt.current((REPO / "README.md").read_text())
    assert found == expected, f"README.md's CI excerpt differs from {excerpt.BASELINE}; run: python .ci/readme_excerpt.py --write"
    # every number in it is a baseline value (spot check: each method's PSNR, formatted as shown)
    for entry in baseline["results"]:
        assert f"| {entry['method']} | {entry['seed']} | {entry['metrics']['psnr']['mean']:.2f} |" in found
