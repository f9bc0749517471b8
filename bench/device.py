"""Which device a command runs on (training, evaluation and ``bench colorize`` all choose it here), and
feeding it: batches loaded ahead in a thread, pinned for non-blocking copies to a GPU."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, TypeVar

import torch

from bench import distributed

T = TypeVar("T")


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA, then Apple's MPS, then CPU. Under torchrun, plain ``cuda`` is the
    process's own GPU, ``cuda:$LOCAL_RANK``."""
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
        if dev.type == "cuda" and dev.index is None and distributed.launched_by_torchrun():
            dev = torch.device("cuda", distributed.local_rank())
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank()) if distributed.launched_by_torchrun() else torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pin_batch(batch: Any) -> Any:
    """``batch`` (a tensor, or a tuple/list of them) in pinned host memory, so that ``.to("cuda",
    non_blocking=True)`` copies it asynchronously; what is not a CPU tensor is left as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory() if batch.device.type == "cpu" else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(pin_batch(b) for b in batch)
    return batch


def prefetch(batches: Iterable[T], depth: int = 2, pin: bool = False) -> Iterator[T]:
    """Iterate ``batches`` in a background thread, up to ``depth`` batches ahead, so that loading the next
    batch (decoding, resizing, slicing and collating, which release the GIL in Pillow and torch) overlaps
    the compute on this one. ``pin``: pin each batch (:func:`pin_batch`) in the thread too. An error in
    the thread is raised here; leaving the loop early stops the thread.

    A DataLoader with workers would do the same from other processes, but its start-up (forking, a
    pickled dataset per worker) costs more than the few batches of an evaluation chunk take to load.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if not put(pin_batch(batch) if pin else batch):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=work, name="bench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
