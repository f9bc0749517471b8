"""The ``bench`` command: the root group and its subcommands, one module per command group.

Heavy imports (torch) live inside command bodies so ``bench --help`` is instant. The subcommand modules
import :mod:`bench.cli.options`, never this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bench.cli.colorize import colorize
from bench.cli.compare import compare
from bench.cli.data import data
from bench.cli.importing import import_cmd
from bench.cli.listing import list_cmd
from bench.cli.options import EXIT_INTERRUPTED
from bench.cli.report import check, report
from bench.cli.run import run, train, train_all
from bench.cli.score import score


class BenchGroup(click.Group):
    """The root group: Ctrl-C ends any command with exit status 130 (click's default is "Aborted!" and 1),
    after the message of what was interrupted (where the checkpoint or journal is, and that the same
    command resumes), so scripts and schedulers can tell an interruption from a failure."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            click.echo(file=sys.stderr)  # closes the terminal's ^C echo
            if str(exc):
                click.echo(str(exc), err=True)
            click.echo("interrupted (Ctrl-C): exit status 130", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--results", type=click.Path(file_okay=False), default=None, help="Results folder [default: $BENCH_RESULTS or ./results].")
@click.version_option(package_name="colorbench")
@click.pass_context
def main(ctx: click.Context, results: str | None) -> None:
    """colorbench: train, score and compare image colourisation methods side by side."""
    from bench.sysutil import keep_freed_memory

    keep_freed_memory()
    _plain_warnings()
    ctx.ensure_object(dict)
    ctx.obj["results"] = Path(results or os.environ.get("BENCH_RESULTS", "results"))


def _plain_warnings() -> None:
    """colorbench's own warnings (missing pretrained weights, ...) read as one line on the terminal, not as
    Python's file:line report with a source line; other libraries' warnings keep Python's format."""
    import warnings

    python_format = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("bench."):
            return f"WARNING: {message}\n"
        return python_format(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


for _command in (list_cmd, train, train_all, run, score, colorize, compare, data, import_cmd, report, check):
    main.add_command(_command)
