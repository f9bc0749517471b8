"""Scanning image files once: full decode of every file, cached by (path, size, mtime).

A full decode is the only reliable way to find truncated or corrupt files and truly grayscale photos,
and it is slow (about a minute for DIV2K's 900 2K PNGs on two cores), so each file's outcome is kept in
``$BENCH_CACHE/scan/`` (default ``~/.cache/colorbench/scan/``) and a file is decoded again only when its
size or modification time changes. File digests (MD5/SHA-256 of large files) are cached the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.datasets.base import BadImage
from bench.datasets.io import decode_image

CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "colorbench")


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or damaged cache is rebuilt, never trusted
    return data if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}


def _save_json(path: Path, data: dict[str, Any]) -> None:
    from bench.store import write_json_atomic

    try:
        write_json_atomic(path, data)
    except OSError as exc:  # a read-only cache costs time, not correctness
        print(f"note: cannot write the scan cache {path} ({exc}); files will be decoded again next time", file=sys.stderr)


def scan_file(path: Path, min_side: int) -> dict[str, Any]:
    """Decode ``path`` once: size, stored mode, conversions, gray flag, or the reason it is unusable."""
    size, mtime = _stamp(path)
    entry: dict[str, Any] = {"size": size, "mtime_ns": mtime}
    try:
        _, info = decode_image(path)
    except BadImage as exc:
        return entry | {"ok": False, "reason": str(exc).removeprefix(f"{path}: ")}
    entry |= {"ok": True, "mode": info.mode, "width": info.width, "height": info.height,
              "conversions": info.conversions, "gray": info.gray}
    if min(info.width, info.height) < min_side:
        entry |= {"ok": False, "reason": f"too small: {info.width}x{info.height} px, below the card's minimum side of {min_side} px"}
    return entry


def scan_images(files: list[Path], rel_to: Path, min_side: int, desc: str = "scan") -> dict[str, dict[str, Any]]:
    """Scan results for ``files`` keyed by path relative to ``rel_to``; decodes only what changed."""
    key = str(rel_to.resolve())
    cache_path = cache_dir() / "scan" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    cache = _load_json(cache_path)
    entries: dict[str, dict[str, Any]] = {
        k: v for k, v in cache.get("files", {}).items() if isinstance(v, dict) and (rel_to / k).exists()
    }
    out: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, Path]] = []
    for path in files:
        rel = path.relative_to(rel_to).as_posix()
        old = entries.get(rel)
        if old is not None and (old.get("size"), old.get("mtime_ns")) == _stamp(path) and old.get("min_side") == min_side:
            out[rel] = old
        else:
            todo.append((rel, path))
    if todo:
        show = sys.stderr.isatty() and len(todo) > 20
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"{desc} (first time only; cached)", unit="img", dynamic_ncols=True, mininterval=0.5)
        # Pillow releases the GIL while decoding, so threads use every core.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for (rel, _), entry in zip(todo, pool.map(lambda t: scan_file(t[1], min_side), todo)):
                out[rel] = entries[rel] = entry | {"min_side": min_side}
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        _save_json(cache_path, {"version": CACHE_VERSION, "root": key, "files": entries})
    return out


def file_fact(path: Path, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` (a JSON value about a file's bytes), cached by (absolute path, size, mtime)."""
    path = Path(path).resolve()
    cache_path = cache_dir() / "file_facts.json"
    cache = _load_json(cache_path)
    files = cache.setdefault("files", {})
    size, mtime = _stamp(path)
    entry = files.get(str(path))
    if not (isinstance(entry, dict) and entry.get("size") == size and entry.get("mtime_ns") == mtime):
        entry = {"size": size, "mtime_ns": mtime}
    if key not in entry:
        entry[key] = compute()
        files[str(path)] = entry
        cache["version"] = CACHE_VERSION
        _save_json(cache_path, cache)
    return entry[key]


def file_digest(path: Path, algorithm: str) -> str:
    """``hashlib`` digest of a file's bytes, computed once per (path, size, mtime)."""
    return file_fact(path, algorithm, lambda: hash_file(path, [algorithm])[algorithm])


def hash_file(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Several digests of one file in a single read."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}
