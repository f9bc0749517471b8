"""``bench import NAME FILE``: a published model's released weights as a colorbench checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.options import user_errors


@click.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to write [default: <results>/models/NAME.pt].")
@click.option("--unverified", is_flag=True,
              help="Import a file whose SHA-256 is not the published one (its results say weights: unverified).")
@click.pass_context
@user_errors
def import_cmd(ctx, name, file, out, unverified) -> None:
    """Import published weights NAME (zhang-eccv16) from FILE; then score them with bench run --checkpoint.

    Nothing is downloaded: get the file where its authors publish it (the error for a missing file says
    where). The file's SHA-256 is checked against the published one.
    """
    from bench.published import PublishedWeightsError, import_published

    target = Path(out) if out else Path(ctx.find_root().obj["results"]) / "models" / f"{name}.pt"
    try:
        meta = import_published(name, Path(file), target, unverified=unverified)
    except PublishedWeightsError as exc:  # an unknown name or a missing, altered or foreign file: found before writing
        raise click.UsageError(str(exc)) from None
    click.echo(f"{name}: {meta['weights']} weights (SHA-256 {meta['identity']['sha256'][:16]}...) -> {target}")
    click.echo(f"score it with: bench run --checkpoint {target} --dataset DATASET")
