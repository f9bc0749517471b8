"""Results on disk: atomic writes, ``schema_version``, identity hashes, per-image rows.

Layout under the results root (``--results``, ``$BENCH_RESULTS``, default ``./results``)::

    train/<method>/<dataset>-s<seed>-<id10>/   checkpoint.pt, losses.csv, train.json
    eval/<dataset>/<split>/<method>-s<seed>-<rid>.json  (+ .csv per-image rows, + -samples/ a few outputs,
                                                         + .failed.json: a failed re-run, beside a good result)
    eval/<dataset>/<split>/<name>-<rid>.json   outputs made elsewhere (``bench score``): no seed of ours

``<rid>`` is the user's ``--tag`` or the first 10 hex digits of the result's identity hash (see
:mod:`bench.identity`), so results of different settings live side by side. Schema 1 results
(``<method>-s<seed>.json``) are still read. Reports and checks read these files only; they never
recompute a metric.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 2  # 2: results keyed by their identity (tag or hash in the file name), prediction recorded


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import (os.umask can only be read by setting it)


def results_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("BENCH_RESULTS", "results"))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the ordinary permissions a plain open() would
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: refuse them loudly instead of writing invalid files."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"refusing to write non-finite value {obj!r} to a result file (cap it or record null)")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_csv_atomic(path: Path, frame: Any) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6f")
    write_text_atomic(path, buf.getvalue())


def short_hash(obj: Any, n: int = 10) -> str:
    from bench.config import canonical_json

    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, computed once per (path, size, modification time) in a process."""
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def code_version() -> str:
    """The package version: bumping it is how a change that invalidates trained artefacts says so."""
    from bench._version import __version__

    return __version__


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux): float results of training can differ between CPU
    models even with the same code and kernels pinned, so results and baselines record it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | None = None) -> dict[str, Any]:
    import numpy
    import torch

    from bench._version import __version__

    env = {
        "colorbench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device and device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def train_identity(recipe_dict: dict, dataset_identity: dict, seed: int, code: dict) -> dict[str, Any]:
    """What a trained artefact is: the recipe, the training data by content (not by where it lies, so moved
    data is not retrained) and the scale its crops are cut at, the seed, and the code (see
    :func:`bench.identity.method_code`)."""
    data = {k: dataset_identity.get(k) for k in ("name", "split", "content_hash")}
    data["short_side"] = (dataset_identity.get("eval_protocol") or {}).get("short_side")
    return {"recipe": recipe_dict, "dataset": data, "seed": seed, "code": code}


def train_dir(root: Path, method: str, dataset: str, seed: int, identity: dict) -> Path:
    return root / "train" / method / f"{dataset}-s{seed}-{short_hash(identity)}"


class ResultPaths:
    """The files of one result: ``<stem>.json``, ``.csv``, ``-samples/``, the journal ``.partial/`` and a
    failed re-run's ``.failed.json`` (never written over a good result)."""

    def __init__(self, root: Path, dataset: str, split: str, stem: str):
        self.folder = Path(root) / "eval" / dataset / split
        self.stem = stem
        self.json = self.folder / f"{stem}.json"
        self.csv = self.folder / f"{stem}.csv"
        self.samples = self.folder / f"{stem}-samples"
        self.partial = self.folder / f"{stem}.partial"
        self.failed = self.folder / f"{stem}.failed.json"


def result_stem(method: str, seed: int | None, rid: str) -> str:
    """``unet-s0-<rid>``; a result with no seed of ours (outputs made elsewhere) is ``<name>-<rid>``."""
    return f"{method}-{rid}" if seed is None else f"{method}-s{seed}-{rid}"


def iter_results(root: Path) -> Iterator[tuple[Path, dict]]:
    """Every evaluation result JSON under ``root`` (unreadable files raise, naming the file)."""
    for path in sorted((root / "eval").glob("*/*/*.json")):
        try:
            yield path, read_json(path)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable result file ({exc}); delete it or re-run the evaluation") from None
