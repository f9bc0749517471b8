"""``bench report`` and ``bench check``: leaderboards and the drift gate, from stored results only.

No torch at import time (``bench --help`` stays instant).
"""

from __future__ import annotations

import functools
from pathlib import Path

import click


def _errors(fn):
    """Report/check errors are user errors: a clean message and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from bench.check import CheckError
        from bench.report import ReportError

        try:
            return fn(*args, **kwargs)
        except (ReportError, CheckError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _results_dir(ctx: click.Context, results: str | None) -> Path:
    if results:
        return Path(results)
    return Path((ctx.find_root().obj or {}).get("results") or "results")


def _names(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for text in values for v in text.split(",") if v.strip()]


@click.command()
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only these datasets (repeat or comma-separate) [default: all].")
@click.option("--format", "formats", default="md,html", show_default=True, help="Comma-separated: md (leaderboard.md), html (index.html).")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True, help="Folder to write the report into.")
@click.option("--images", default=None, metavar="IDS", help="Comma-separated image ids or 0-based indexes among the stored samples for the grids [default: drawn with a fixed seed].")
@click.option("--grid-rows", type=click.IntRange(1, 64), default=4, show_default=True, help="Images per comparison grid when --images is not given.")
@click.option("--results", type=click.Path(file_okay=False), default=None, help="Results folder [default: bench --results, $BENCH_RESULTS or ./results].")
@click.pass_context
@_errors
def report(ctx, datasets, formats, out, images, grid_rows, results) -> None:
    """Write leaderboard.md and index.html (tables, grids, plots) from stored results."""
    from bench.report import write_report

    root = _results_dir(ctx, results)
    bad = [f for f in _names((formats,)) if f not in ("md", "html")]
    if bad or not _names((formats,)):
        raise click.BadParameter(f"unknown {', '.join(bad) or '(empty)'}; choose from md, html", param_hint="'--format'")
    rep = write_report(root, Path(out), _names((formats,)), _names(datasets) or None, _names((images,)) if images else None, grid_rows)
    n = sum(len(s.table.rows) for s in rep.sections)
    click.echo(f"{len(rep.sections)} table(s), {n} row(s), {len(rep.failed)} failed run(s) listed")
    for f in rep.files:
        click.echo(f"wrote {f}")


@click.command()
@click.option("--baseline", type=click.Path(dir_okay=False), required=True, help="The baseline JSON (e.g. results/baselines/ci-samples.json).")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=VALUE,...", help="Allowed absolute change (or N% of the baseline), e.g. psnr=0.05,ssim=0.002; '*' for metrics not named [default: the baseline's, else psnr=0.05,ssim=0.002,*=0.5%].")
@click.option("--results", type=click.Path(file_okay=False), default=None, help="Results folder [default: bench --results, $BENCH_RESULTS or ./results].")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Only results of these datasets (repeat or comma-separate).")
@click.option("--update-baseline", is_flag=True, help="Write the current results as the new baseline (on purpose: commit the file).")
@click.option("--fail-on-new", is_flag=True, help="Also fail when a current result is not in the baseline.")
@click.pass_context
@_errors
def check(ctx, baseline, tolerances, results, datasets, update_baseline, fail_on_new) -> None:
    """Compare current results with a baseline; exit 1 on drift beyond tolerance or a missing result."""
    from bench.check import (
        DEFAULT_TOLERANCE, CheckError, compare, current_results, format_comparison, key_text, parse_tolerances,
        read_baseline, single_results, write_baseline,
    )

    root = _results_dir(ctx, results)
    path = Path(baseline)
    if not update_baseline and not path.is_file():
        raise click.BadParameter(f"{path} does not exist; give the committed baseline file, or write one with "
                                 f"--update-baseline", param_hint="'--baseline'")
    try:
        cli_tol = parse_tolerances(tolerances)
    except CheckError as exc:
        raise click.BadParameter(str(exc), param_hint="'--tolerance'") from None
    only = _names(datasets)
    current, failed = current_results(root, only or None)
    if update_baseline:
        if failed:
            names = ", ".join(key_text(k) for k in sorted(failed))
            raise CheckError(f"refusing to write a baseline while results failed ({names}); fix them or delete their result files")
        if not current:
            raise CheckError(f"no results under {root / 'eval'} to write a baseline from")
        entries = single_results(current)  # several results of one key: an error listing them
        old = read_baseline(path) if path.exists() else None
        tol = {**DEFAULT_TOLERANCE, **((old or {}).get("tolerance") or {}), **cli_tol}
        if old is not None:
            scope = {**old, "results": [e for e in old["results"] if not only or e.get("dataset") in only]}
            click.echo(f"changes against the previous baseline {path}:")
            click.echo(format_comparison(compare(scope, current, failed, tol)))
        # with --dataset, entries of the other datasets stay as they were
        kept = [e for e in (old or {}).get("results", []) if only and e.get("dataset") not in only]
        write_baseline(path, [*kept, *entries], tol)
        click.echo(f"wrote {path}: {len(current)} result(s)" + (f" (+{len(kept)} kept from other datasets)" if kept else "") + "; review and commit it")
        return
    base = read_baseline(path)
    tol = {**DEFAULT_TOLERANCE, **(base.get("tolerance") or {}), **cli_tol}
    comp = compare(base, current, failed, tol, fail_on_new=fail_on_new)
    click.echo(format_comparison(comp))
    if comp.failed:
        bad = [ln for ln in comp.lines if ln.failed]
        click.echo(f"FAILED: {len(bad)} problem(s) against {path}. If the change is intended, update the baseline on purpose: "
                   f"bench check --update-baseline --baseline {path}", err=True)
        ctx.exit(1)
    click.echo(f"OK: {len(comp.lines)} line(s) within tolerance of {path}")
