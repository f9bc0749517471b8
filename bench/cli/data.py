"""``bench data fetch|list|verify|prepare``: get datasets, see where they are, check them, decode them once. No
torch at import."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.options import user_errors


def _card(name: str):
    from bench.config import DatasetCard
    from bench.datasets import DATASETS

    cls = DATASETS.get(name)  # unknown names: a usage error with close matches
    return cls, DatasetCard.load(cls.data_name or cls.name)


@click.group()
def data() -> None:
    """Fetch datasets, list where they are, verify their content, decode them into the pixel cache."""


@data.command("fetch")
@click.argument("name")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Install here [default: $BENCH_DATA/<name>, then ~/.cache/colorbench/data/<name>].")
@click.option("--archive-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Take the archives from this folder when they are there (they are verified, never deleted).")
@click.option("--keep-archive", is_flag=True, help="Keep downloaded archives under <root>/.downloads after installing.")
@click.option("--force", is_flag=True, help="Replace an installed copy that is not the verified official one.")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when the terminal is interactive].")
@user_errors
def fetch(name, root, archive_dir, keep_archive, force, progress) -> None:
    """Download, verify (published checksum) and install dataset NAME."""
    from bench.datasets._fetch import card_downloads, install
    from bench.datasets.base import default_root

    cls, card = _card(name)
    where = default_root(card.name, root)
    if card.manual_download:
        click.echo(f"{name}: there is no unauthenticated download URL. Fetch it yourself:\n")
        click.echo(card.manual_download.format(root=where).rstrip())
        click.echo(f"\nThen check it with: bench data list {name}" + (f" --root {where}" if root else ""))
        return
    downloads = card_downloads(card)
    if not downloads:
        why = "it needs no download" if not cls.needs_root else "it reads your own files (pass --root DIR to commands)"
        click.echo(f"{name}: nothing to fetch: {why}")
        return
    for spec in downloads:
        click.echo(install(spec, where, archive_dir=Path(archive_dir) if archive_dir else None, keep_archive=keep_archive,
                           force=force, progress=progress, echo=lambda s: click.echo(s, err=True)))
    for line in _status_lines(name, root):
        click.echo(line)


def _status_lines(name: str, root: str | None) -> list[str]:
    """Where ``name`` is expected, and per split: present or not, image count, official status."""
    from bench.datasets import DATASETS
    from bench.datasets.base import SPLITS, DatasetError, open_split

    cls = DATASETS.get(name)
    lines = []
    for split in SPLITS:
        try:
            ds = open_split(cls, split, root, decode_check=False)
        except DatasetError as exc:
            lines.append(f"  {split:<5}  missing: {exc}")
            continue
        official, note = ds.official()
        mark = {True: "official", False: "NOT official", None: "unverifiable"}[official]
        lines.append(f"  {split:<5}  {len(ds):>6} images  {mark}: {note}")
        if ds.ignored:
            lines.append(f"         {len(ds.ignored)} file(s) without an image suffix are ignored")
    from bench.config import DatasetCard
    from bench.datasets.base import default_root

    if cls.name == "folder" and root is None:  # any folder of images: it has no default place
        where = "any folder of images, given with --root DIR (it has no default place)"
    else:
        where = str(default_root(cls.data_name or cls.name, root)) if cls.needs_root else "built in (no files to fetch)"
    head = f"{name}: {where}"
    expected = DatasetCard.load(cls.data_name or cls.name).images
    if expected:
        head += "  [official: " + ", ".join(f"{k} {v:,}" for k, v in expected.items()) + "]"
    return [head, *lines]


@data.command("list")
@click.argument("names", nargs=-1)
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Look here (with one NAME) instead of the default place.")
@user_errors
def list_cmd(names, root) -> None:
    """Each dataset: where it is expected, present or not, image counts, official status (no decoding)."""
    from bench.datasets import DATASETS

    if root and len(names) != 1:
        raise click.UsageError("--root needs exactly one dataset NAME")
    for name in names or DATASETS.names():
        for line in _status_lines(name, root):
            click.echo(line)


@data.command("verify")
@click.argument("name")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Where the dataset lives.")
@user_errors
def verify(name, root) -> None:
    """Re-hash every file of an installed dataset against what 'bench data fetch' verified."""
    from bench.datasets._fetch import card_downloads, check_installed
    from bench.datasets.base import default_root

    cls, card = _card(name)
    downloads = card_downloads(card)
    if not downloads:
        raise click.ClickException(f"{name}: nothing to verify against ({card.official or 'no published checksums'})")
    where = default_root(card.name, root)
    failed = False
    for spec in downloads:
        folder = where / spec.provides
        if not folder.exists():
            click.echo(f"{folder}: missing")
            failed = True
            continue
        ok, why = check_installed(folder, spec, deep=True)
        click.echo(f"{folder}: {'OK' if ok else 'FAILED'}: {why}")
        failed |= not ok
    if failed:
        raise click.ClickException(f"{name}: verification failed; reinstall with 'bench data fetch {name} --force'")


@data.command("prepare")
@click.argument("name")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Where the dataset lives.")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="all", show_default=True,
              help="Which split(s) to decode into the pixel cache.")
@click.option("--on-bad-image", type=click.Choice(["skip", "error"]), default="skip", show_default=True,
              help="Unreadable or too-small image files: skip them (as training does), or stop.")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when the terminal is interactive].")
@user_errors
def prepare(name, root, split, on_bad_image, progress) -> None:
    """Decode dataset NAME once into the pixel cache ($BENCH_CACHE/pixels, default ~/.cache/colorbench/pixels),
    at the scale runs read it: the card's short_side (evaluation with mode full: full size). Training and
    evaluation otherwise build it on first use. (A recipe whose crops exceed short_side reads a cache at the
    crop size, built on first use.)"""
    from bench.cli.validate import check_root, check_split_files
    from bench.datasets.base import open_split
    from bench.datasets.cache import ensure_cache, human_bytes, scale_text
    from bench.datasets.views import eval_scale

    cls, card = _card(name)
    check_root(name, root)  # usage errors (exit 2) before anything is decoded
    splits = ["train", "test"] if split == "all" else [split]
    check_split_files(name, root, on_bad_image, splits)  # missing, empty, or bad files under error: exit 2, as for run
    for s in splits:
        images = open_split(cls, s, root, on_bad_image=on_bad_image)
        for line in images.report():  # skipped (each with its reason), converted and gray files, as training names them
            click.echo(line, err=True)
        scale = card.short_side if s == "train" else eval_scale(card.eval_protocol())
        if images.memory_mapped and scale is None:
            click.echo(f"{name}/{s}: no cache needed: its files are uint8 pixels, read through a memory map")
            continue
        cache, built = ensure_cache(images, scale, progress=progress, echo=lambda m: click.echo(m, err=True))
        state = "built" if built else "already prepared"
        click.echo(f"{name}/{s}: {state}: {len(cache)} images, {scale_text(scale)}, {human_bytes(cache.nbytes)} in {cache.folder}")
