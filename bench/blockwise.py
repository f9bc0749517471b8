"""Run a batch of per-pixel work as cache-sized blocks on a small pool of single-threaded torch workers.

Colour conversion and SSIM are long chains of cheap elementwise ops. Over a whole batch every op streams
its operands from memory; over blocks of a few MB they stay in cache (measured 1.5-2x on 2 cores). But a
block costs ~60 torch ops, and with torch's own (OpenMP) threads each op is a parallel region ending at a
barrier: when another process holds one of the two cores, every barrier waits for a descheduled thread.
Measured with one other busy process, 256 Lab round trips of 96 px: 2 OpenMP threads 260-400 ms, 1 thread
90 ms. So the blocks are shared out instead, whole, to ``torch.get_num_threads()`` worker threads that run
torch with one thread each (torch releases the GIL inside ops): no barriers, and as fast on a quiet machine.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def run_blocks(work: Callable[[T], None], blocks: Sequence[T]) -> None:
    """Call ``work(block)`` for every block: inline when torch runs one thread or there is one block, else
    on the pool (``work`` must write disjoint outputs). A worker's exception is raised here."""
    threads = torch.get_num_threads()
    if threads <= 1 or len(blocks) <= 1:
        for b in blocks:
            work(b)
        return
    for _ in _pool(threads).map(work, blocks):
        pass


def _pool(threads: int) -> ThreadPoolExecutor:
    """Made once per process and thread count (a forked child, e.g. a DataLoader worker, makes its own)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), threads):
        ready = threading.Barrier(threads + 1)

        def single_threaded() -> None:
            torch.get_num_threads()  # torch's lazy per-thread set-up first: it would put the default back later
            torch.set_num_threads(1)  # this worker's OpenMP/MKL threads; also torch's default for new threads...
            ready.wait()

        pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-blocks", initializer=single_threaded)
        for _ in range(threads):
            pool.submit(int)
        ready.wait()  # every worker has started
        torch.set_num_threads(threads)  # ...which is put back here; this thread's own setting never changed
        _POOL = (os.getpid(), threads, pool)
    return _POOL[2]
