"""The pixel cache: a split decoded once per machine into uint8 memory-mapped shards.

Decoding a 2K PNG takes about 110 ms on one core; cutting a 256-px crop out of the decoded pixels about
15 microseconds. So each split is decoded once, at the scale it is read at (the card's ``short_side``, or
the crop size when that is larger, for training crops; ``short_side`` for evaluation, full size for
``mode: full``), into ``$BENCH_CACHE/pixels/<name>-<split>-<scale>-<key>/`` (default ``~/.cache/colorbench``):

* ``shard-NNNNN.u8``: images one after another, each (3, H, W) uint8 row-major, at most 1 GiB a shard;
* ``index.npy``: (n, 4) int64, per image its shard, byte offset, height and width;
* ``manifest.json``: what was cached (dataset, split, scale, full key, content hash, ids, sizes).

Every DataLoader worker and every process on the node maps the same files read-only (copy on write), so
the operating system's page cache holds the pixels once: no worker has a copy of its own, and a crop is a
slice and a copy.

The key is a hash of the split's content hash and image count, the scale, the decoders (Pillow, torch and
torchvision versions, and the source of the loader's ``load`` and of the resize: a new release or an
edited decoder may round differently) and, for files, their size, inode, modification and change times (a
file rewritten in place with the same size keeps the content hash of names and sizes; the change time
catches even a restored modification time). A cache is opened only when its manifest holds the same full
key and image ids. A build goes to a temporary folder that is
renamed into place only once every shard is written and synced: an interrupted build leaves nothing that
a later run could take for a complete cache (its temporary folder is removed then, or by the next build).
Processes that want the same cache at once (torchrun) take turns on a lock file; the first builds, the
others wait and open it; without working locks (some network filesystems) each builds into its own
temporary folder and the first rename wins.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from bench.datasets._scan import cache_dir
from bench.datasets.base import DatasetError, ImageSet
from bench.datasets.io import read_image
from bench.datasets.views import PixelSource, resize_short

FORMAT = 1
SHARD_BYTES = 1 << 30  # images never straddle shards; a shard holds at most one image more than this
RESERVE_BYTES = 1 << 30  # a build never leaves less than this free on the cache's disk
MANIFEST = "manifest.json"
INDEX = "index.npy"


class CacheError(DatasetError):
    """The cache cannot be built here (no room, not writable); the message says what to do instead."""


def pixels_root() -> Path:
    return cache_dir() / "pixels"


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def scale_text(scale: int | None) -> str:
    return "full size" if scale is None else f"shorter side {scale}"


def scaled_shape(h: int, w: int, short: int | None) -> tuple[int, int]:
    """The (height, width) :func:`bench.datasets.views.resize_short` gives an image of h x w."""
    if short is None or min(h, w) == short:
        return h, w
    s = short / min(h, w)
    return max(short, round(h * s)), max(short, round(w * s))


def planned_bytes(images: ImageSet, scale: int | None) -> int | None:
    """The cache's size, from the image sizes the loader knows without decoding (None when it knows none)."""
    shapes = images.image_shapes()
    if shapes is None:
        return None
    return sum(3 * h * w for h, w in (scaled_shape(h, w, scale) for h, w in shapes))


def _source_sha256(*objects: Any) -> str:
    """A hash of the source files that define ``objects``: the decoder and the resize (a change to either
    would make a cache built before it disagree with decoding)."""
    digest = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(o) or "" for o in objects} - {""}):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _file_stamps(files: list[Path]) -> str:
    """Size, inode, modification and change time of every file: a file rewritten in place with the same size
    (the content hash of file loaders covers names and sizes) or replaced under the same name, even with its
    old modification time restored (``cp -p``, ``touch -r``; the change time cannot be set), gets a new key."""
    def stamp(p: Path) -> str:
        st = os.stat(p)
        return f"{p}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    return hashlib.sha256("\n".join(stamp(p) for p in files).encode()).hexdigest()


def cache_key(images: ImageSet, scale: int | None) -> str:
    """Everything the cached pixels depend on: the split's content, the scale, the decoders (Pillow, torch,
    torchvision versions; the source of the loader's ``load`` and of the resize) and the files' stamps."""
    import PIL
    import torchvision

    ident = {"format": FORMAT, "name": images.name, "split": images.split, "scale": scale,
             "content_hash": images.identity()["content_hash"], "n_images": len(images),
             "files": _file_stamps(list(getattr(images, "files", None) or [])),
             "code": _source_sha256(type(images).load, read_image, resize_short),
             "pillow": PIL.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def cache_folder(images: ImageSet, scale: int | None, key: str | None = None) -> Path:
    tag = "full" if scale is None else f"s{scale}"
    return pixels_root() / f"{images.name}-{images.split}-{tag}-{(key or cache_key(images, scale))[:16]}"


class PixelCache(PixelSource):
    """A complete cache folder, opened read-only. ``image(i)`` is a view on the memory map (no copy)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: cache format {self.manifest.get('format')}, expected {FORMAT}")
        self.scale = self.manifest["scale"]
        self.index = np.load(self.folder / INDEX)
        sizes = self.manifest["shard_bytes"]
        if self.index.shape != (self.manifest["n_images"], 4):
            raise ValueError(f"{self.folder}: the index does not match the manifest")
        for k, size in enumerate(sizes):
            if self._shard_path(k).stat().st_size != size:
                raise ValueError(f"{self._shard_path(k)}: {self._shard_path(k).stat().st_size} bytes, expected {size}")
        self.nbytes = int(sum(sizes))
        self._shards: list[np.ndarray] | None = None

    def _shard_path(self, k: int) -> Path:
        return self.folder / f"shard-{k:05d}.u8"

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers map the files again rather than copy pixels
        return {**self.__dict__, "_shards": None}

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int) -> Tensor:
        if self._shards is None:
            # Copy-on-write mapping: the pages are the page cache's, shared by every process; a tensor made
            # from it is writable (a read-only one makes torch warn), and a write would stay private.
            self._shards = [np.memmap(self._shard_path(k), dtype=np.uint8, mode="c")
                            for k in range(len(self.manifest["shard_bytes"]))]
        shard, offset, h, w = (int(v) for v in self.index[i])
        return torch.from_numpy(self._shards[shard][offset : offset + 3 * h * w].reshape(3, h, w))

    def describe(self) -> dict[str, Any]:
        return {"source": "cache", "scale": self.scale, "folder": str(self.folder), "bytes": self.nbytes}


def _ids_sha256(images: ImageSet) -> str:
    return hashlib.sha256("\n".join(images.image_id(i) for i in range(len(images))).encode()).hexdigest()


def open_cache(folder: Path, images: ImageSet | None = None, key: str | None = None) -> PixelCache | None:
    """The complete cache in ``folder`` (for ``images``: the same images in the same order, and built under
    ``key`` when given), or None. Only a finished build has a manifest: it is written last, then renamed in."""
    if not (folder / MANIFEST).is_file():
        return None
    try:
        cache = PixelCache(folder)
    except (OSError, ValueError, KeyError) as exc:
        print(f"pixel cache: {folder} is damaged ({exc}); it is rebuilt", file=sys.stderr)
        return None
    if key is not None and cache.manifest.get("key") != key:
        return None
    if images is not None and (len(cache) != len(images) or cache.manifest.get("ids_sha256") != _ids_sha256(images)):
        return None
    return cache


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_cache(images: ImageSet, scale: int | None, *, progress: bool | None = None,
                 echo: Callable[[str], None] = _stderr) -> tuple[PixelCache, bool]:
    """The split's cache at ``scale``, built first if there is none: (cache, whether this call built it).

    Raises :class:`CacheError` (naming the folder and what to do instead) when it cannot be built there."""
    key = cache_key(images, scale)
    folder = cache_folder(images, scale, key)
    cache = open_cache(folder, images, key)
    if cache is not None:
        return cache, False
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    with _build_lock(folder, echo):
        cache = open_cache(folder, images, key)  # built by whoever held the lock before us
        if cache is not None:
            return cache, False
        try:
            if folder.exists():  # incomplete or damaged: never trusted; moved aside first, so it vanishes at once
                trash = _temp_name(folder)
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
            _remove_stale_builds(folder)
        except OSError as exc:
            raise _unwritable(folder, exc) from None
        built = _build(images, scale, key, folder, progress=progress, echo=echo)
    cache = open_cache(folder, images, key)
    if cache is None:
        raise CacheError(f"pixel cache: {folder} was built but does not open; delete it and try again, or pass --no-cache")
    return cache, built


@contextlib.contextmanager
def _build_lock(folder: Path, echo: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock file of ``folder``'s build (waiting while another process builds it). Where the file
    system has no working locks (some network file systems), go on without: each process then builds into
    a temporary folder of its own and the first rename wins."""
    from filelock import FileLock, Timeout

    lock: FileLock | None = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            echo(f"pixel cache: another process is building {folder}; waiting for it")
            lock.acquire()
    except (OSError, NotImplementedError) as exc:
        if not os.access(folder.parent, os.W_OK):
            raise _unwritable(folder, exc if isinstance(exc, OSError) else OSError(str(exc))) from None
        echo(f"pixel cache: no lock under {folder.parent} ({exc}); building without one")
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _unwritable(folder: Path, exc: OSError) -> CacheError:
    return CacheError(f"pixel cache: cannot write under {folder.parent} ({exc.strerror or exc}); set BENCH_CACHE to a "
                      "writable folder, or pass --no-cache (every crop then decodes its image: slower)")


def _temp_name(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _remove_stale_builds(folder: Path) -> None:
    """Temporary folders of interrupted builds of ``folder`` by processes of this host that no longer run."""
    host = socket.gethostname()
    for tmp in folder.parent.glob(f".{folder.name}.*.tmp"):
        parts = tmp.name[len(folder.name) + 2 : -len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        alive = pid == os.getpid()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if not alive:
                os.kill(pid, 0)
                alive = True
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)


def _decoded(images: ImageSet, scale: int | None) -> Iterator[Tensor]:
    """The split's images at ``scale``, in order, decoded by a few threads (Pillow and torch's resize release
    the GIL) at most a few images ahead of the writer."""
    def one(i: int) -> Tensor:
        img = images.load(i)
        return resize_short(img, scale) if scale is not None else img

    workers = max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers)
    pending: collections.deque = collections.deque()
    todo = iter(range(len(images)))
    try:
        for i in todo:
            pending.append(pool.submit(one, i))
            if len(pending) >= 2 * workers:
                break
        while pending:
            img = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(one, nxt))
            yield img
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def room_problem(wanted: list[tuple[ImageSet, int | None]]) -> str | None:
    """Why the caches of ``wanted`` (splits and scales) that do not exist yet cannot be built, all of them on
    one disk (no room, the folder not writable), or None: checked before anything is decoded, by the build
    and by the CLI's validation (:func:`bench.cli.validate.check_pixel_cache`)."""
    missing = []
    for images, scale in wanted:
        key = cache_key(images, scale)
        if open_cache(cache_folder(images, scale, key), images, key) is None:
            missing.append((images, scale))
    if not missing:
        return None
    label = ", ".join(f"{im.name}/{im.split}" for im, _ in missing)
    where = pixels_root()
    existing = next((p for p in [where, *where.parents] if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        return (f"pixel cache for {label}: cannot write under {where} ({existing} is not a writable folder); set BENCH_CACHE to a writable folder, or pass "
                "--no-cache (every crop then decodes its image: slower)")
    sizes = [planned_bytes(im, scale) for im, scale in missing]
    need = sum(n for n in sizes if n is not None)
    free = shutil.disk_usage(existing).free
    if need + RESERVE_BYTES > free:
        return (f"pixel cache for {label}: needs {human_bytes(need)} under {where}, but the disk has {human_bytes(free)} "
                f"free (and {human_bytes(RESERVE_BYTES)} is always left free); free some space, set BENCH_CACHE to a "
                "folder on a larger disk, or pass --no-cache (every crop then decodes its image: slower)")
    return None


class _WriteFailed(Exception):
    """An OSError while writing the cache (not while reading the images): reported as the cache's problem."""


def _build(images: ImageSet, scale: int | None, key: str, folder: Path, *, progress: bool | None,
           echo: Callable[[str], None]) -> bool:
    from bench.progress import Progress, progress_mode

    label = f"{images.name}/{images.split}"
    problem = room_problem([(images, scale)])
    if problem:
        raise CacheError(problem)
    need = planned_bytes(images, scale)
    free = shutil.disk_usage(folder.parent).free
    size = human_bytes(need) if need is not None else "size unknown until decoded"
    echo(f"pixel cache: decoding {label} once ({len(images)} images, {scale_text(scale)}): {size} to {folder} "
         f"(ahead of time: bench data prepare {images.name})")
    bar = Progress(progress_mode(progress), len(images), 0, f"pixel cache {label}", "img")
    t0 = time.perf_counter()
    tmp = _temp_name(folder)
    out = None

    def write(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except OSError as exc:
            raise _WriteFailed(exc) from exc

    try:
        write(lambda: tmp.mkdir(parents=True))
        index = np.zeros((len(images), 4), dtype=np.int64)
        shard_bytes: list[int] = []
        written = 0
        with contextlib.closing(_decoded(images, scale)) as decoded:
            for i, img in enumerate(decoded):
                if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
                    raise ValueError(f"{label}: image {images.image_id(i)} is {tuple(img.shape)} {img.dtype}, not (3, H, W) uint8")
                data = img.contiguous().numpy().tobytes()
                if need is None and free - written - len(data) < RESERVE_BYTES:
                    raise CacheError(f"pixel cache for {label}: the disk under {folder.parent} is nearly full after "
                                     f"{human_bytes(written)}; free some space, set BENCH_CACHE to a folder on a larger "
                                     "disk, or pass --no-cache")
                if out is None or shard_bytes[-1] >= SHARD_BYTES:
                    if out is not None:
                        write(lambda: _close_synced(out))
                    out = write(lambda: open(tmp / f"shard-{len(shard_bytes):05d}.u8", "wb"))
                    shard_bytes.append(0)
                index[i] = (len(shard_bytes) - 1, shard_bytes[-1], img.shape[1], img.shape[2])
                write(lambda: out.write(data))
                shard_bytes[-1] += len(data)
                written += len(data)
                bar.advance()
                bar.report()
        if out is not None:
            write(lambda: _close_synced(out))
        write(lambda: _write_synced(tmp / INDEX, lambda fh: np.save(fh, index)))
        manifest = {
            "format": FORMAT, "key": key, "dataset": images.name, "split": images.split, "scale": scale,
            "content_hash": images.identity()["content_hash"], "root": str(images.root) if images.root else None,
            "n_images": len(images), "shard_bytes": shard_bytes, "ids_sha256": _ids_sha256(images),
            "built_by": f"{socket.gethostname()}:{os.getpid()}", "seconds": round(time.perf_counter() - t0, 2),
        }
        write(lambda: _write_synced(tmp / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=2).encode())))
        try:
            os.rename(tmp, folder)  # atomic; fails when another process's build got there first
        except OSError as exc:
            if open_cache(folder, images, key) is None:
                raise _WriteFailed(exc) from exc
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        _sync_dir(folder.parent)
    except BaseException as exc:
        if out is not None:
            out.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, _WriteFailed):
            raise _unwritable(folder, exc.__cause__) from exc.__cause__
        raise
    finally:
        bar.close()
    echo(f"pixel cache: {label} ready in {time.perf_counter() - t0:.1f} s ({human_bytes(written)} in {folder})")
    return True


def _write_synced(path: Path, write: Callable[[Any], Any]) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _close_synced(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
