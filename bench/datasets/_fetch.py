"""Fetching dataset archives: download with resume, verify the published checksum, extract safely.

Nothing here runs unless a user asks (``bench data fetch``). The steps, in order:

1. download ``url`` to ``<root>/.downloads/<name>.part`` with a progress bar; a broken connection is
   retried with an HTTP ``Range`` request from where it stopped (also across runs of the command);
2. check size, SHA-256 and/or MD5 against the card's published values *before* opening the archive; a
   mismatch deletes the download and stops;
3. extract into a temporary folder beside the target, refusing members with absolute paths, ``..``,
   links or special files (hand-written: tarfile's ``filter='data'`` only exists from Python 3.11.4 and
   zipfile has no such filter; the data filter is also applied where it exists);
4. write a marker (``.colorbench-fetch.json``: the verified archive checksum and every extracted file's
   size and SHA-256) into the extracted folder and rename it into place: no half-written dataset is
   ever visible under the target name.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping

from bench.datasets.base import DatasetError

MARKER = ".colorbench-fetch.json"
DOWNLOADS = ".downloads"
CHECKSUMS = ("sha256", "md5")


class ChecksumMismatch(DatasetError):
    pass


class UnsafeArchive(DatasetError):
    pass


@dataclass(frozen=True)
class Download:
    """One archive of a dataset card's ``downloads`` list."""

    name: str  # file name of the archive
    provides: str  # the top-level folder the archive holds, installed as <root>/<provides>
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    checksum_source: str = ""

    @classmethod
    def from_card(cls, entry: Mapping[str, Any], where: str) -> "Download":
        allowed = {"name", "provides", "url", "size", "sha256", "md5", "checksum_source"}
        unknown = set(entry) - allowed
        if unknown or "name" not in entry or "provides" not in entry:
            raise DatasetError(f"{where}: each download needs name and provides (allowed keys: {', '.join(sorted(allowed))})")
        return cls(**{k: (int(v) if k == "size" and v is not None else v) for k, v in entry.items()})

    @property
    def published(self) -> dict[str, str]:
        return {a: getattr(self, a).lower() for a in CHECKSUMS if getattr(self, a)}


def card_downloads(card) -> list[Download]:
    return [Download.from_card(d, f"bench/datasets/cards/{card.name}.yaml: downloads") for d in card.downloads]


# --------------------------------------------------------------------------------------------------
# Download


def _progress(total: int | None, initial: int, desc: str, show: bool):
    if not show:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True, mininterval=0.5)


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    progress: bool | None = None,
    retries: int = 5,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming with ``Range`` after a broken
    connection (up to ``retries`` times in this call; a later call resumes the same ``.part``)."""
    from bench._version import __version__

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show = sys.stderr.isatty() if progress is None else progress
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        if expected_size is not None and have == expected_size:
            break
        headers = {"User-Agent": f"colorbench/{__version__}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                mode = "wb"
                if have and resp.status == 206:
                    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != have:
                        raise ConnectionError(f"server resumed at the wrong offset ({resp.headers.get('Content-Range')!r})")
                    mode = "ab"
                else:
                    have = 0  # the server ignored the Range header: start over
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else expected_size
                with open(part, mode) as fh, _progress(total, have, dest.name, show) as bar:
                    while True:
                        try:
                            chunk = resp.read(1 << 20)
                        except http.client.IncompleteRead as exc:
                            fh.write(exc.partial)  # keep what arrived: the next attempt resumes after it
                            raise
                        if not chunk:
                            break
                        fh.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                if total is not None and part.stat().st_size < total:
                    raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing after our offset: the .part is complete (or stale)
                if expected_size is None or have == expected_size:
                    break
                part.unlink()
                continue
            raise DatasetError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            kept = part.stat().st_size if part.exists() else 0
            again = f"run the command again: it resumes from {part} ({kept} bytes)" if kept else "run the command again"
            if isinstance(getattr(exc, "reason", None), socket.gaierror):  # no DNS, no network: waiting will not help
                raise DatasetError(f"download of {url} failed: cannot resolve its host ({exc.reason}); this machine seems "
                                   f"to have no network. Connect it and {again}, or install the files by hand "
                                   "(bench data list says where they go)") from None
            if attempt == retries:
                raise DatasetError(f"download of {url} failed after {retries + 1} attempts ({exc}); {again}") from None
            print(f"{dest.name}: {exc}; resuming (attempt {attempt + 2} of {retries + 1})", file=sys.stderr)
            time.sleep(min(retry_wait * 2**attempt, 60))
    os.replace(part, dest)
    return dest


def verify_archive(path: Path, spec: Download) -> dict[str, str]:
    """Check ``path`` against every published checksum (and size) of ``spec``; return its digests."""
    from bench.datasets._scan import hash_file

    if not spec.published:
        raise DatasetError(f"{spec.name}: the dataset card publishes no checksum; refusing to install an unverified archive")
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ChecksumMismatch(f"{path}: {size} bytes, but the published archive has {spec.size} bytes")
    digests = hash_file(path, ["sha256", *spec.published])
    for algo, want in spec.published.items():
        if digests[algo] != want:
            raise ChecksumMismatch(f"{path}: {algo} is {digests[algo]}, but the published {algo} is {want} ({spec.checksum_source or 'dataset card'})")
    return digests


# --------------------------------------------------------------------------------------------------
# Safe extraction


def _target(dest: Path, name: str, archive: Path) -> Path | None:
    """Where member ``name`` lands under ``dest``; refuses absolute paths and ``..`` (``\\`` counts as a
    separator, as it does on Windows)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or "\x00" in norm:
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path; refusing to extract the archive")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} contains '..' and would land outside the target; refusing to extract the archive")
    if not parts:
        return None
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest.resolve()):  # only possible through a link, which we never create
        raise UnsafeArchive(f"{archive}: member {name!r} resolves outside the target; refusing to extract the archive")
    return target


def _refuse_link(archive: Path, name: str, link: str, dest: Path, hard: bool = False) -> None:
    base = dest if hard else dest / Path(name.replace("\\", "/")).parent  # hard links name archive paths
    where = Path(link) if link.startswith("/") else base / link
    outside = link.startswith("/") or not os.path.normpath(where).startswith(os.path.normpath(dest) + os.sep)
    why = "points outside the target" if outside else "is a link (dataset archives hold only files and folders)"
    raise UnsafeArchive(f"{archive}: member {name!r} -> {link!r} {why}; refusing to extract the archive")


def _copy(src: IO[bytes], target: Path) -> dict[str, Any]:
    target.parent.mkdir(parents=True, exist_ok=True)
    h, n = hashlib.sha256(), 0
    with open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            h.update(chunk)
            n += len(chunk)
    return {"size": n, "sha256": h.hexdigest()}


def extract_archive(archive: Path, dest: Path) -> dict[str, dict[str, Any]]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` safely; return {relative path: {size,
    sha256}} of every file written. Raises :class:`UnsafeArchive` before writing an unsafe member."""
    dest.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Any]] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # check every member before writing any
                if stat.S_ISLNK(info.external_attr >> 16):
                    _refuse_link(archive, info.filename, zf.read(info).decode(errors="replace"), dest)
                _target(dest, info.filename, archive)
            for info in infos:
                target = _target(dest, info.filename, archive)
                if target is None:
                    continue
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as src:
                    written[target.relative_to(dest).as_posix()] = _copy(src, target)
        return written
    if tarfile.is_tarfile(archive):
        data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4 / 3.12: a second opinion
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:  # streamed: a 2.6 GB .tar.gz is read once
                if m.issym() or m.islnk():
                    _refuse_link(archive, m.name, m.linkname, dest, hard=m.islnk())
                if not (m.isdir() or m.isreg()):
                    raise UnsafeArchive(f"{archive}: member {m.name!r} is a special file (device, fifo); refusing to extract the archive")
                target = _target(dest, m.name, archive)
                if data_filter is not None:
                    try:
                        data_filter(m, str(dest))
                    except tarfile.FilterError as exc:
                        raise UnsafeArchive(f"{archive}: member {m.name!r} refused: {exc}") from None
                if target is None:
                    continue
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                src = tf.extractfile(m)
                assert src is not None  # a regular file always has data
                with src:
                    written[target.relative_to(dest).as_posix()] = _copy(src, target)
        return written
    raise DatasetError(f"{archive}: neither a zip nor a tar archive")


# --------------------------------------------------------------------------------------------------
# Install and check


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_installed(folder: Path, spec: Download, deep: bool = False) -> tuple[bool, str]:
    """Whether ``folder`` holds exactly what the verified official archive held: the marker's archive
    checksum equals the published one and every file's name and size (``deep``: SHA-256) matches."""
    marker = read_marker(folder)
    if marker is None:
        return False, f"{folder} was not installed by 'bench data fetch' (no {MARKER}), so it cannot be matched to the published archive"
    for algo, want in spec.published.items():
        if marker.get("archive", {}).get(algo) != want:
            return False, f"{folder} was installed from an archive whose {algo} differs from the published one"
    expected: dict[str, dict[str, Any]] = marker.get("files", {})
    found = {}
    for dirpath, _, filenames in os.walk(folder):
        for fn in filenames:
            p = Path(dirpath) / fn
            rel = p.relative_to(folder).as_posix()
            if rel in expected or not any(part.startswith(".") for part in rel.split("/")):  # OS litter is not data
                found[rel] = p
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    changed = sorted(r for r in set(expected) & set(found) if found[r].stat().st_size != expected[r]["size"])
    if deep:
        from bench.datasets._scan import hash_file

        changed = sorted(set(changed) | {r for r in set(expected) & set(found) if r not in changed
                                         and hash_file(found[r], ["sha256"])["sha256"] != expected[r]["sha256"]})
    if missing or extra or changed:
        parts = [f"{len(v)} {k} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                 for k, v in (("missing", missing), ("added", extra), ("changed", changed)) if v]
        return False, f"{folder} differs from the verified archive: " + "; ".join(parts)
    how = "SHA-256 of every file" if deep else "names and sizes"
    return True, f"matches the archive {spec.name} verified against its published checksum ({how} checked)"


def install(
    spec: Download,
    root: Path,
    *,
    archive_dir: Path | None = None,
    keep_archive: bool = False,
    force: bool = False,
    progress: bool | None = None,
    retry_wait: float = 2.0,
    echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> str:
    """Download (or take from ``archive_dir``), verify and install one archive as ``root/spec.provides``.
    Returns what was done, in words."""
    if not spec.published:
        raise DatasetError(f"{spec.name}: the dataset card publishes no checksum; refusing to install an unverified archive")
    target = root / spec.provides
    if target.exists():
        ok, why = check_installed(target, spec)
        if ok and not force:
            return f"{target}: already installed and verified"
        if not force:
            raise DatasetError(f"{target} already exists but {why.removeprefix(str(target) + ' ')}; pass --force to replace it")
    root.mkdir(parents=True, exist_ok=True)
    local = archive_dir / spec.name if archive_dir is not None else None
    if local is not None and local.exists():
        archive, ours = local, False
        echo(f"{spec.name}: using {local}")
    else:
        if not spec.url:
            raise DatasetError(f"{spec.name}: no download URL in the card; put the archive in a folder and pass --archive-dir")
        archive, ours = root / DOWNLOADS / spec.name, True
        if not archive.exists():
            echo(f"{spec.name}: downloading {spec.url}")
            download(spec.url, archive, expected_size=spec.size, progress=progress, retry_wait=retry_wait)
    try:
        digests = verify_archive(archive, spec)
    except ChecksumMismatch as exc:
        if ours:
            archive.unlink()
            _remove_empty(root / DOWNLOADS)
        raise ChecksumMismatch(f"{exc}. {'The download was deleted; run the command again' if ours else 'The archive was left in place'}"
                               " (a proxy, a truncated transfer or a changed mirror can cause this)") from None
    echo(f"{spec.name}: {', '.join(f'{a} {digests[a]}' for a in spec.published)} matches the published value")
    tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{spec.provides}-", dir=root))
    try:
        try:
            written = extract_archive(archive, tmp)
        except UnsafeArchive:
            if ours:  # verified yet unsafe: unusable either way
                archive.unlink()
                _remove_empty(root / DOWNLOADS)
            raise
        prefix = spec.provides.rstrip("/") + "/"
        files = {k[len(prefix):]: v for k, v in written.items() if k.startswith(prefix)}
        if not files:
            raise DatasetError(f"{archive}: holds no {spec.provides}/ folder; is it the right archive?")
        from bench._version import __version__
        from bench.store import now

        marker = {"archive": {"name": spec.name, "url": spec.url, "size": archive.stat().st_size, **digests},
                  "checked": sorted(spec.published), "checksum_source": spec.checksum_source,
                  "installed": now(), "colorbench": __version__, "files": dict(sorted(files.items()))}
        (tmp / spec.provides / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if target.exists():  # --force: swap, so the target name never points at a half-written folder
            os.replace(target, tmp / ".replaced")
        os.replace(tmp / spec.provides, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if ours and not keep_archive:
        archive.unlink()
        _remove_empty(root / DOWNLOADS)
    return f"{target}: installed {len(files)} files from {spec.name} (checksum verified)"


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
