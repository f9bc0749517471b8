"""``bench compare A B --dataset D``: a paired test of two stored results, image by image.

A and B name results as ``METHOD`` or, where a method has several results (other settings or tags),
``METHOD@TAG`` or ``METHOD@HASH`` (4+ hex digits of its identity hash); an ambiguous name is an error
listing the candidates. Reads only result files (never recomputes a metric); pairs images by id; refuses
results whose dataset content or evaluation protocol differ. No torch import at module level.
"""

from __future__ import annotations

import click


def _load(results, dataset: str, split: str, reference: str, seed: int | None):
    """The result ``reference`` names (``METHOD`` or ``METHOD@TAG_OR_HASH``) and its per-image rows."""
    import pandas as pd

    from bench.identity import ResultLookupError, resolve_result

    try:
        found = resolve_result(results, reference, dataset, split, seed)
    except ResultLookupError as exc:
        raise click.ClickException(str(exc)) from None
    csv_path = found.path.parent / str(found.data.get("per_image_file") or found.path.with_suffix(".csv").name)
    if not csv_path.exists():
        raise click.ClickException(f"{csv_path}: per-image rows missing beside {found.path.name}")
    rows = pd.read_csv(csv_path, dtype={"id": str})
    return found.data, rows


@click.command()
@click.argument("method_a")
@click.argument("method_b")
@click.option("--dataset", "-d", default="samples", show_default=True, help="Dataset of both results (as bench run's default).")
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test", show_default=True,
              help="Split of both results (all: every image of the dataset scored as one set).")
@click.option("--metric", "metric_names", multiple=True, help="Metric to compare (repeatable) [default: every per-image metric both have].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the runs (result file part -s<seed>); outputs made elsewhere have none and match any.")
@click.option("--seed-b", type=int, default=None, help="Seed of B's run when it differs (e.g. one method, two seeds).")
@click.option("--resamples", type=click.IntRange(min=100), default=10000, show_default=True, help="Paired bootstrap resamples.")
@click.pass_context
def compare(ctx, method_a, method_b, dataset, split, metric_names, seed, seed_b, resamples) -> None:
    """Paired test of METHOD_A vs METHOD_B on the same images: is the difference significant?

    Name a result as METHOD, or METHOD@TAG / METHOD@HASH where the method has several (e.g. unet@gpu-run).

    For each metric: the means, the mean paired difference A - B with its 95% paired-bootstrap interval
    (significant when it excludes 0: the verdict) and the two-sided Wilcoxon signed-rank p-value.
    """
    import numpy as np

    from bench.metrics.stats import Bootstrap, paired_comparison, source_images

    results = ctx.obj["results"]
    res_a, rows_a = _load(results, dataset, split, method_a, seed)
    res_b, rows_b = _load(results, dataset, split, method_b, seed if seed_b is None else seed_b)
    for key in ("content_hash", "eval_protocol"):
        if res_a["dataset"].get(key) != res_b["dataset"].get(key):
            raise click.ClickException(f"{method_a} and {method_b} were scored on different data ({key} differs): "
                                       "re-run both on the same dataset version before comparing")
    for res, name in ((res_a, method_a), (res_b, method_b)):  # e.g. scored on the images it was trained on
        for warning in res.get("warnings") or []:
            click.echo(f"WARNING {name}: {warning}")
    for rows, name in ((rows_a, method_a), (rows_b, method_b)):
        if rows["id"].duplicated().any():
            raise click.ClickException(f"{name}: duplicate image ids in its per-image file")
    merged = rows_a.merge(rows_b, on="id", suffixes=("_a", "_b"))
    if merged.empty:
        raise click.ClickException(f"{method_a} and {method_b} share no image ids")
    dropped = max(len(rows_a), len(rows_b)) - len(merged)
    per_image = [c for c in rows_a.columns if c != "id" and c in rows_b.columns]
    wanted = list(metric_names) or per_image
    missing = [m for m in wanted if m not in per_image]
    if missing:
        set_level = [m for m in missing if m in res_a.get("metrics", {}) and not res_a["metrics"][m].get("per_image", True)]
        hint = f" ({', '.join(set_level)}: set-level, no per-image values to pair)" if set_level else ""
        raise click.ClickException(f"not a per-image metric of both results: {', '.join(missing)}{hint}; "
                                   f"choices: {', '.join(per_image) or '(none)'}")

    if method_a == method_b and res_a.get("seed") != res_b.get("seed"):  # one method, two seeds: say which is which
        method_a, method_b = f"{method_a} (seed {res_a.get('seed')})", f"{method_b} (seed {res_b.get('seed')})"
    boot = Bootstrap(resamples=resamples, seed=0)
    clusters = source_images(merged["id"].tolist())
    n_sources = int(clusters.max()) + 1
    click.echo(f"{method_a} (A) vs {method_b} (B) on {dataset}/{split}: {len(merged)} paired images"
               + (f" (tiles of {n_sources} photos, resampled by photo)" if n_sources < len(merged) else "")
               + (f" ({dropped} without a partner skipped)" if dropped else ""))
    head = ["metric", "mean A", "mean B", "A - B", "95% CI of A - B", "Wilcoxon p", "verdict"]
    table = []
    for m in wanted:
        entry = res_a.get("metrics", {}).get(m, {})
        higher = entry.get("higher_is_better", True)  # None: the metric has no better direction
        r = paired_comparison(m, merged[f"{m}_a"].to_numpy(np.float64), merged[f"{m}_b"].to_numpy(np.float64), higher, boot,
                              clusters)
        if r.significant and r.better is None:
            verdict = f"significant: {method_a if r.diff > 0 else method_b} higher (no better direction)"
        elif r.significant:
            winner = method_a if r.better == "a" else method_b
            verdict = f"significant: {winner} better"
        elif r.diff == 0 and r.ci95 == [0.0, 0.0]:
            verdict = "identical"
        else:
            verdict = "not significant"
        ci = "-" if r.ci95 is None else f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]"
        p = "-" if r.wilcoxon_p is None else f"{r.wilcoxon_p:.3g}"
        table.append([f"{m} {'↑' if higher is True else '↓' if higher is False else '·'}", f"{r.mean_a:.4f}", f"{r.mean_b:.4f}", f"{r.diff:+.4f}", ci, p, verdict])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    click.echo("\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, table)]))
    click.echo(f"verdict: significant when the paired-bootstrap 95% interval of the mean difference excludes 0 "
               f"({resamples} resamples, seed 0); Wilcoxon signed-rank (two-sided) shown beside it.")
