"""The local engine: shard tasks on a process pool, progress back to the parent."""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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
_FORK_SAFE = False  # set by own_process(): workers may fork from this process


def own_process() -> None:
    """For a process augpipe runs from its start (the command line): OpenCV is held to one
    thread here before anything uses it, so no OpenCV thread pool ever exists in this process and
    workers can fork from it, ready at once with everything loaded. (A pool forked from a process
    whose OpenCV had started its threads can deadlock; a library caller's process is not ours to
    judge, so it gets the fork server.)"""
    global _FORK_SAFE
    limit_threads()
    _FORK_SAFE = sys.platform.startswith("linux")  # macOS's system libraries are not fork-safe


def start_workers_early() -> None:
    """Get worker start-up going before the caller's own slow steps (recipe, scan)."""
    if not _FORK_SAFE:
        _fork_server()


def _fork_server():
    """Start the fork server now, so that its imports (about 0.7 s) overlap the parent's own.

    forkserver: workers fork from a clean process that never touched OpenCV's thread pool.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def _pool_context():
    """(context, forked): fork from this process when it is ours and has no other thread."""
    if _FORK_SAFE and threading.active_count() == 1:
        return mp.get_context("fork"), True
    return _fork_server(), False


def run_local(tasks: list[ShardTask], job: Job, workers: int, on_progress: Callable[[int], None]) -> list[dict]:
    """Run every task; the largest first, so that the last to finish are small."""
    from augpipe.tasks import write_shard

    tasks = sorted(tasks, key=lambda t: -t.planned_rows)
    if workers <= 1 or len(tasks) <= 1:
        limit_threads()
        return [write_shard(t, job, on_progress) for t in tasks]
    ctx, forked = _pool_context()
    progress = ctx.Queue()
    # ProcessPoolExecutor, not Pool: a worker that dies (killed, out of memory) fails the run
    # with BrokenProcessPool instead of hanging it
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                               initargs=(progress,))
    waiting = _Waiting(tasks)
    futures: list = []
    results = []
    feeder = None
    try:
        if forked:
            # the first submit forks every worker, here, from the only thread
            _feed(pool, waiting, job, futures)
        else:
            # Starting a worker waits for the fork server to finish its imports: a thread hands
            # the tasks to the pool meanwhile, and until a worker reports ready this process,
            # which has everything loaded, takes the smallest task still waiting.
            feeder = threading.Thread(target=_feed, args=(pool, waiting, job, futures), daemon=True)
            feeder.start()
            while not _drain(progress, on_progress, wait=0) and (task := waiting.take(last=True)) is not None:
                limit_threads()
                results.append(write_shard(task, job, on_progress))
            feeder.join()
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(progress, on_progress, wait=0)
            for future in finished:
                results.append(future.result())  # re-raises a worker's error here
        _drain(progress, on_progress, wait=0)
    except BaseException:
        waiting.close()
        if feeder is not None:
            feeder.join()  # at most one worker start away: no worker may start after this
        processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        raise
    pool.shutdown()
    return results


class _Waiting:
    """Tasks not yet handed out, largest first: the pool takes from the front, this process
    from the back."""

    def __init__(self, tasks: list):
        self._tasks = collections.deque(tasks)
        self._lock = threading.Lock()

    def take(self, last: bool = False):
        with self._lock:
            if not self._tasks:
                return None
            return self._tasks.pop() if last else self._tasks.popleft()

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()


def _feed(pool: ProcessPoolExecutor, waiting: _Waiting, job: Job, futures: list) -> None:
    while (task := waiting.take()) is not None:
        try:
            futures.append(pool.submit(_pool_task, task, job))
        except RuntimeError:  # the pool was shut down: the run is failing already
            return


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
    progress.put(0)  # ready: the parent stops taking tasks itself


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
