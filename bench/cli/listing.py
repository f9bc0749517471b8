"""``bench list methods|datasets|metrics``: what is registered, one line each."""

from __future__ import annotations

import click

from bench.cli.options import user_errors


@click.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "metrics"]), default="methods")
@user_errors
def list_cmd(what: str) -> None:
    """List registered methods, datasets or metrics with a one-line description."""
    rows: list[tuple[str, str]] = []
    if what == "methods":
        # Read from the recipe files without building them: no adapter, hence no torch, is imported unless a
        # plugin is installed (tests/test_cli.py checks it); 'bench train' checks each recipe in full.
        from bench.recipes import recipe_summaries

        for r in recipe_summaries():
            kind = "no training" if r.training is None else f"{r.training} recipe"
            rows.append((r.name, f"{r.description or r.adapter} [{r.adapter}; {kind}]"))
    elif what == "datasets":
        from bench.datasets import DATASETS

        rows = [(e.name, e.description + ("" if e.source == "builtin" else f" (plugin: {e.source})")) for e in DATASETS.entries()]
    else:
        from bench.metrics import METRICS

        for e in METRICS.entries():
            metric = e.obj()
            ok, why = metric.available()
            arrow = {True: "higher is better", False: "lower is better", None: "no better direction"}[metric.higher_is_better]
            kind = "per image" if metric.per_image else "set-level"
            weights = f"; needs {metric.needs_weights}" if metric.needs_weights else ""
            status = "available" if ok else f"UNAVAILABLE: {why}"
            rows.append((e.name, f"{e.description} ({arrow}; {kind}{weights}) [{status}]"))
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        click.echo(f"{name:<{width}}  {desc}")
