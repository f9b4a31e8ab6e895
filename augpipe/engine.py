"""The local engine: shard tasks on a process pool, progress back to the parent."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from concurrent.futures import ProcessPoolExecutor, wait
from collections.abc import Callable

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from augpipe.plan import ShardTask
    from augpipe.tasks import Job

_QUEUE = None  # a worker's progress queue, set by _init_worker


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def limit_threads() -> None:
    """One OpenCV thread a process: workers are the parallelism, and a forked OpenCV thread
    pool can deadlock."""
    import cv2

    cv2.setNumThreads(1)
    cv2.ocl.setUseOpenCL(False)


_PRELOAD = ["augpipe._preload"]


def start_workers_early():
    """Start the fork server now, so that its imports overlap the parent's own (about 1 s).

    forkserver: workers fork from a clean process that never touched OpenCV's thread pool
    (a pool forked from a parent that used OpenCV can deadlock).
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def run_local(tasks: list[ShardTask], job: Job, workers: int, on_progress: Callable[[int], None]) -> list[dict]:
    """Run every task; the largest first, so that the last to finish are small."""
    from augpipe.tasks import write_shard

    tasks = sorted(tasks, key=lambda t: -t.planned_rows)
    if workers <= 1 or len(tasks) <= 1:
        limit_threads()
        return [write_shard(t, job, on_progress) for t in tasks]
    ctx = start_workers_early()
    progress = ctx.Queue()
    results = []
    # ProcessPoolExecutor, not Pool: a worker that dies (killed, out of memory) fails the run
    # with BrokenProcessPool instead of hanging it
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                               initargs=(progress,))
    try:
        queued = {pool.submit(_pool_task, t, job): t for t in tasks}
        pending = set(queued)
        workers_running = False
        while pending:
            workers_running |= _drain(progress, on_progress, wait=0.1 if workers_running else 0)
            if not workers_running:
                # Workers take a moment to start (their imports): meanwhile this process, which
                # has everything loaded, takes the smallest task still waiting.
                stolen = next((f for f in reversed(list(queued)) if f in pending and f.cancel()), None)
                if stolen is not None:
                    pending.discard(stolen)
                    limit_threads()
                    results.append(write_shard(queued[stolen], job, on_progress))
                    continue
                workers_running = True
            finished, pending = wait(pending, timeout=0)
            for future in finished:
                results.append(future.result())  # re-raises a worker's error here
        _drain(progress, on_progress, wait=0)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    pool.shutdown()
    return results


def _drain(progress, on_progress: Callable[[int], None], wait: float) -> bool:
    """Pass the workers' progress on; True when there was any."""
    got = False
    try:
        on_progress(progress.get(timeout=wait) if wait else progress.get_nowait())
        got = True
        while True:
            on_progress(progress.get_nowait())
    except queue_mod.Empty:
        pass
    return got


def _init_worker(progress) -> None:
    global _QUEUE
    _QUEUE = progress
    limit_threads()


class _Batched:
    """Progress sent at most every 0.1 s: a message an image would cost more than it tells."""

    def __init__(self):
        self.count, self.last = 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.count += n
        if time.monotonic() - self.last > 0.1:
            self.flush()

    def flush(self) -> None:
        if self.count:
            _QUEUE.put(self.count)
        self.count, self.last = 0, time.monotonic()


def _pool_task(task: ShardTask, job: Job) -> dict:
    from augpipe.tasks import write_shard

    batched = _Batched()
    try:
        return write_shard(task, job, batched)
    finally:
        batched.flush()
