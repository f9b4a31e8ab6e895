"""The local engine: pure tasks on a process pool, progress back to the parent.

Workers die with the parent (PR_SET_PDEATHSIG on Linux, a watchdog thread elsewhere): a run
that is killed leaves no process behind to publish stale shards or hold the caller's stdout.
"""

from __future__ import annotations

import collections
import gc
import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from augpipe import signals
from augpipe.processes import alive, descendants, die_with_parent

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


def tune_allocator() -> None:
    """Fixed thresholds for glibc's malloc in a process of ours: arrays up to 1 MB from its heap,
    which grows 32 MB ahead and keeps up to 32 MB freed (trimmed past 16 MB, down to that pad).
    By default it gives freed memory at the heap's top back to the system and serves arrays past
    a threshold it moves by mmap, each once: a copy's masks and their PNGs' buffers then had their
    pages faulted in afresh, copy after copy (a seventh of an instance-mask copy's time, by
    bench/targets.py); growing the heap by its default 128 KB at a time left 80,000 more page
    faults in a 3,200-input expand at 320 px, its set-up 0.1 s longer. Elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 16 << 20)
    mallopt(m_top_pad, 32 << 20)


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
    tune_allocator()
    _FORK_SAFE = sys.platform.startswith("linux")  # macOS's system libraries are not fork-safe


def start_workers_early() -> None:
    """Get worker start-up going before the caller's own slow steps (recipe, scan)."""
    if not _FORK_SAFE:
        _fork_server()


def _fork_server():
    """Start the fork server now, so that its imports (about 0.7 s) overlap the parent's own.

    forkserver: workers fork from a clean process that never touched OpenCV's thread pool. The
    fork server itself exits when this process dies, and its children with it.
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


def can_fork() -> bool:
    """Whether a process may fork from this one now: ours from its start, and no other thread."""
    return _FORK_SAFE and threading.active_count() == 1


class Forked:
    """`func(send, *args)` in a process forked from this one, for set-up work that overlaps this
    process's own (the scan and the content hashes, while this one imports albumentations);
    `send(kind, value)` messages are read here in order. A pipe holds about 64 KB: the child
    sends small messages while it works and its results at the end, or it would wait for this
    process to read them. The child dies with this process. It is forked with `os.fork`, not
    as a multiprocessing Process, so that such a child may fork helpers of its own."""

    def __init__(self, func: Callable, *args):
        self._recv, send = mp.Pipe(duplex=False)
        self._held: list[tuple] = []
        self._terminated = False
        self.status: int | None = None
        parent = os.getpid()
        # A signal reaching the child before it has its own handler and state would run the
        # parent's on the parent's copies (ending the parent's other children): held until then.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._pid: int | None = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        if self._pid == 0:
            try:
                _LIVE.clear()  # the parent's other children are not this one's to end
                self._recv.close()
                signals.install_in_worker()
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
                _forked_main(send, parent, func, args)
            finally:
                os._exit(0)  # never back into the caller's stack; no atexit of the parent's
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        send.close()
        _LIVE.append(self)

    def receive(self, kind: str, progress: Callable[[int], None] | None = None):
        """The child's next message of `kind`, its "progress" messages before it passed to
        `progress`; the child's exception raised here."""
        while True:
            got, value = self._held.pop(0) if self._held else self._next()
            if got == "error":
                raise value
            if got == "progress":
                if progress is not None:
                    progress(value)
                continue
            if got != kind:
                raise RuntimeError(f"the set-up process sent {got}, not {kind}")
            return value

    def progress_so_far(self) -> int:
        """The progress the child has sent and this process not yet read, taken without waiting
        (any other message is kept for `receive`)."""
        done = 0
        while not self._held and self._recv.poll(0):
            try:
                got, value = self._next()
            except ProcessDied:  # the child is gone: `receive` says so
                break
            if got == "progress":
                done += value
            else:
                self._held.append((got, value))
        return done

    def _next(self) -> tuple:
        try:
            return self._recv.recv()
        except (EOFError, OSError):  # OSError: "got end of file during message", killed while it sent one
            raise ProcessDied("a set-up process ended before its results") from None

    def close(self) -> None:
        """Ends the child and reaps it; a second call does nothing. SIGTERM first: the child
        ends and reaps its own helpers (`signals.in_worker`), where a SIGKILL would leave them to
        the system. Not ended within `TERM_GRACE` seconds (its handler waiting on a helper slow to
        end, on a loaded machine), its helpers are killed, for it to reap; then, after as long
        again, the child. `status`: how it ended, as `os.waitstatus_to_exitcode` gives it (128 +
        15 by its SIGTERM handler; None when a close it interrupted reaped it)."""
        pid = self._pid
        if pid is None:
            return
        self.terminate()
        status = _reaped(pid, within=TERM_GRACE)
        if status is None:
            for helper in descendants(pid):
                _signal(helper, signal.SIGKILL)
            status = _reaped(pid, within=TERM_GRACE)
        if status is None:
            _signal(pid, signal.SIGKILL)
            status = _reaped(pid, within=None)
        self._ended(status)

    def _ended(self, status: int) -> None:
        # once, where a close interrupted by a signal whose handler closed it again reaped it first;
        # _pid last: interrupted before it, a second close finds the child reaped and ends here
        if self._pid is None:
            return
        try:
            _LIVE.remove(self)
        except ValueError:  # removed already, by the close that interrupted this one
            pass
        self._recv.close()
        self.status = None if status == _GONE else os.waitstatus_to_exitcode(status)
        self._pid = None

    def terminate(self) -> None:
        """SIGTERM to the child, once (`close` waits for it); told before it is marked, so that a
        handler's close that interrupts this tells it too."""
        pid = self._pid
        if pid is not None and not self._terminated:
            _signal(pid, signal.SIGTERM)
            self._terminated = True


class ProcessDied(RuntimeError):
    """A set-up process (or one of its helpers) ended without its results: killed, or out of memory."""


_LIVE: list[Forked] = []  # this process's Forked children not yet closed


def _end_live() -> None:
    live = list(_LIVE)
    for forked in live:  # all told first: they end side by side
        forked.terminate()
    for forked in live:
        forked.close()


signals.at_term(_end_live)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# Seconds a set-up process is given to end on SIGTERM, and again once its helpers are killed,
# before SIGKILL: it ends its own helpers first (on CI's loaded machine, 2 s and once even 5 s
# were not enough for that)
TERM_GRACE = 5.0


_GONE = -1  # a wait status no process ends with: reaped already (by a close this one interrupted)


def _reaped(pid: int, within: float | None) -> int | None:
    """The child's wait status once it has ended, within `within` seconds (None: however long);
    None if it has not; _GONE if it was reaped already."""
    import time

    deadline = None if within is None else time.monotonic() + within
    while True:
        try:
            done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            return _GONE
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def _forked_main(send, parent: int, func: Callable, args: tuple) -> None:
    signals.install_in_worker()  # Ctrl-C is the parent's, which ends this process; SIGTERM ends it
    die_with_parent(parent)
    try:
        func(lambda kind, value: send.send((kind, value)), *args)
    except BaseException as exc:  # noqa: BLE001 - raised again in the parent, as it is
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - one that does not pickle goes as its type and text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        send.send(("error", exc))
    finally:
        send.close()


class LocalEngine:
    """A pool of `workers` processes, started on first use and kept for every pass of a run."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())
        self._pool: ProcessPoolExecutor | None = None
        self._progress = None
        self._forked = False
        self._ready = False
        self.used_workers = 1

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def start_early(self) -> None:
        if self.workers > 1:
            start_workers_early()

    def describe(self) -> dict:
        return {"name": self.name, "nodes": 1, "cpus": default_workers(), "workers": self.used_workers,
                "asked": self.workers, "retried_tasks": 0}

    def map(self, func: Callable, items: list, spec, on_progress: Callable[[int], None]) -> Iterator:
        """func(item, spec, progress) for every item, results as they finish; the costliest first,
        so that the last to finish are small."""
        items = sorted(items, key=lambda t: -t.cost)
        on_progress = signals.checked(on_progress)
        if self.workers <= 1 or len(items) <= 1 and self._pool is None:
            limit_threads()
            for item in items:
                yield func(item, spec, on_progress)
            return
        with signals.deferred():
            yield from self._pooled(func, items, spec, on_progress)

    def _start(self, count: int) -> None:
        ctx, self._forked = _pool_context()
        self._progress = ctx.Queue()
        self.used_workers = count
        # ProcessPoolExecutor, not Pool: a worker that dies (killed, out of memory) fails the run
        # with BrokenProcessPool instead of hanging it
        self._pool = ProcessPoolExecutor(count, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self._progress, os.getpid(), dict(os.environ)))

    def _pooled(self, func: Callable, items: list, spec, on_progress: Callable[[int], None]) -> Iterator:
        if self._pool is None:
            self._start(min(self.workers, len(items)))
        waiting = _Waiting(items)
        futures: list = []
        feeder = None
        try:
            if self._forked or self._ready:
                _feed(self._pool, waiting, func, spec, futures)  # the first submit forks every worker
            else:
                # Starting a worker waits for the fork server to finish its imports: a thread
                # hands the tasks to the pool meanwhile, and until a worker reports ready this
                # process, which has everything loaded, takes the smallest task still waiting.
                feeder = threading.Thread(target=_feed, args=(self._pool, waiting, func, spec, futures), daemon=True)
                feeder.start()
                while not self._drain(on_progress) and (item := waiting.take(last=True)) is not None:
                    limit_threads()
                    yield func(item, spec, on_progress)
                feeder.join()
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                self._drain(on_progress)
                signals.check()
                for future in finished:
                    yield future.result()  # re-raises a worker's error here
            self._drain(on_progress)
        except BaseException:
            waiting.close()
            if feeder is not None:
                feeder.join()  # at most one worker start away: no worker may start after this
            raise

    def _drain(self, on_progress: Callable[[int], None]) -> bool:
        """Pass the workers' progress on; True when there was any (0 is a worker saying it is ready)."""
        got = False
        try:
            while True:
                n = self._progress.get_nowait()
                self._ready = True
                on_progress(n)
                got = True
        except queue_mod.Empty:
            pass
        return got

    def close(self, failed: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if failed:
            processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                proc.terminate()
            for proc in processes:
                proc.join(timeout=2)
            # its manager thread ends once it sees them gone: waited for here, not at the interpreter's
            # exit, where CPython's wake-up of it races the thread closing its pipe ("Exception ignored
            # ... Bad file descriptor" after a Ctrl-C's one line, seen once in CI)
            manager = getattr(pool, "_executor_manager_thread", None)
            if manager is not None:
                manager.join(timeout=2)
        else:
            pool.shutdown()


class _Waiting:
    """Tasks not yet handed out, costliest first: the pool takes from the front, this process
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


def _feed(pool: ProcessPoolExecutor, waiting: _Waiting, func: Callable, spec, futures: list) -> None:
    while (task := waiting.take()) is not None:
        try:
            futures.append(pool.submit(_pool_job, func, task, spec))
        except RuntimeError:  # the pool was shut down: the run is failing already
            return


def release_fork_server() -> None:
    """A worker started by the fork server holds the write end of the server's "alive" pipe, so
    that the server outlives its client while any worker lives, and the workers (who die with the
    server) would outlive it too. Let go of it: the server then exits with our process. A worker
    forked from a process that never started a fork server has no such pipe, nor the module
    (importing it cost each worker 5-8 ms before its first task)."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:
        return
    try:
        server = forkserver._forkserver
        fd = server._forkserver_alive_fd
    except AttributeError:  # another Python's internals: the watchdog below still holds
        return
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def _init_worker(progress, parent: int, environ: dict) -> None:
    global _QUEUE
    # first: a forked worker had the parent's handler, which only noted a signal (the parent
    # deferred signals as it forked): the parent's terminate() ends a worker at once, and Ctrl-C
    # is the parent's to handle, once
    signals.install_in_worker()
    _LIVE.clear()  # a set-up process of the parent's is not a worker's to end
    # A fork server keeps the environment it started with: a worker takes its parent's of now
    # (credentials and endpoints set since, AWS_ENDPOINT_URL, ...)
    os.environ.clear()
    os.environ.update(environ)
    # With a fork server the kernel's parent is the fork server, which exits with `parent`.
    release_fork_server()
    die_with_parent(os.getppid())
    if not alive(parent):
        os._exit(1)
    _QUEUE = progress
    limit_threads()
    tune_allocator()
    # What the worker starts with (every module loaded before the fork, 100,000 objects) lives as
    # long as it does: the collector leaves it out of its passes. Its full passes over all of it
    # (about 50 ms each) came a few times a run, 12 us a row in a detection run at 320 px.
    gc.freeze()
    progress.put(0)  # ready: the parent stops taking tasks itself


def _pool_job(func: Callable, task, spec):
    from augpipe.engines import Batched

    batched = Batched(_QUEUE.put)
    try:
        return func(task, spec, batched)
    finally:
        batched.flush()
