"""A feed of worker processes of augpipe's own (`readers.loader(..., processes=N)`).

A DataLoader's worker gets each batch's indices in a message, sends the batch through a queue
whose thread pickles it, and the main process answers with the next indices: at 64 px that
machinery and its wake-ups cost the two cores about a third of what decoding the batch did. Here:

- each process gets its epoch's batches in one message (a `ThreadLoader`'s share: batches
  k, k+N, ... of the epoch's order; of a `ShardIterable`, what DataLoader worker k would stream);
- it makes each batch into `worker_memory` slots and sends it on its pipe (a slot's tensor is a
  few numbers there, labels and boxes their bytes);
- the main process takes the processes' batches in turn, as a `ThreadLoader` takes its threads',
  and grants a process one batch more for each it takes by a semaphore (no message);
- an epoch left early is called off in each process (a flag in shared memory), whose batches in
  flight are read and dropped before the next epoch starts.

The processes live as long as the loader (`close`, the loader collected, or this process's
end). They end on their own once this process is gone (they look at their parent whenever they
wait), and a process that dies is reported, and new ones start for the next epoch.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import warnings
import weakref
from collections import deque

import torch
import torch.multiprocessing

from augpipe import worker_memory
from augpipe.errors import AugpipeError
from augpipe.processes import alive, process_start
from augpipe.readers import ShardDataset, ShardIterable, ThreadLoader, _each_tensor, _Epoch

_LOOK = 1.0  # seconds a waiting process waits before it looks whether its parent is still there


class ProcessLoader(ThreadLoader):
    """Batches made by N processes of augpipe's own, in the order a `ThreadLoader` of N threads
    gives them, the same items; a reader's `recipe=` or `transform=` runs in each process. See
    the module's text. `prefetch`: batches a process makes ahead of the loop, at most;
    `multiprocessing_context`: how they start, as a DataLoader's (default: this platform's)."""

    def __init__(self, dataset, batch_size: int = 64, *, processes: int = 2, shuffle: bool | None = None,
                 seed: int | None = None, drop_last: bool = False, pin_memory: bool = False, prefetch: int = 2,
                 multiprocessing_context=None):
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in (processes, prefetch)):
            raise ValueError(f"processes and prefetch are whole numbers, 1 or more, not {processes!r} and {prefetch!r}")
        super().__init__(dataset, batch_size, threads=processes, shuffle=shuffle, seed=seed, drop_last=drop_last,
                         pin_memory=pin_memory)
        self.prefetch = prefetch
        if multiprocessing_context is None or isinstance(multiprocessing_context, str):
            multiprocessing_context = torch.multiprocessing.get_context(multiprocessing_context)
        self.context = multiprocessing_context
        self._workers: list[_Worker] | None = None
        self._owner: int | None = None  # the process that started them: a forked copy of the loader is not it
        self._run: deque | None = None
        self._lock = threading.RLock()

    def _allowed(self, dataset) -> None:
        """Any reader: a recipe or a transform runs in each process on its own."""

    def __iter__(self):
        """An epoch's batches. A new iteration calls off one still going (an iterator left
        unfinished and still held, in this thread or another), which then ends. Anything raised
        here but at a `yield` (Ctrl-C in the middle of a receive) leaves the pipes in a state not
        known: the processes are ended, and the next epoch starts new ones. One thread at a time
        talks to the processes (`_lock`); none holds it across a `yield`."""
        with self._lock:
            run = self._begin()
        while True:
            with self._lock:
                if self._run is not run:  # called off by a new iteration
                    return
                batch = self._take(run)
            if batch is _END:
                return
            try:
                yield batch
            except BaseException:  # the loop left: a known state
                with self._lock:
                    if self._run is run:
                        self._call_off(run)
                raise

    def _begin(self) -> deque:
        if self._run is not None:
            warnings.warn("a new iteration over a processes= feed called off the epoch a loop still held, which "
                          "ends there (its batches not taken are not read): take a batch to look at from another "
                          "loader, or from the loop's own batches", stacklevel=3)
            self._call_off(self._run)
        run = deque()  # the processes in the epoch, the next to take from first
        try:
            workers = self._start()
            epoch = getattr(self.dataset, "epoch", 0)
            batches = None if isinstance(self.dataset, ShardIterable) else self._batches()
            self._run = run
            for k, worker in enumerate(workers):
                worker.begin((epoch, None if batches is None else batches[k::self.threads]), self.prefetch)
                run.append(worker)
        except BaseException:
            if self._run is run:
                self.close()
            raise
        return run

    def _ours(self) -> bool:
        return self._owner == os.getpid()

    def _take(self, run: deque):
        """The next batch, in turn, or `_END` once every process has ended its epoch (at once in a
        forked process: the epoch and its processes are its parent's)."""
        if not self._ours():
            self._run = None
            return _END
        try:
            while run:
                worker = run[0]
                kind, value = worker.receive()
                if kind == "batch":
                    run.rotate(-1)
                    worker.grants.release()
                    return _each_tensor(value, torch.Tensor.pin_memory) if self.pin_memory else value
                run.popleft()
                if kind == "error":
                    self._call_off(run)
                    if isinstance(value, BaseException):
                        raise value
                    value.reraise()
        except BaseException:
            if self._run is run:
                self.close()
            raise
        self._run = None
        return _END

    def _start(self) -> list[_Worker]:
        if self._workers is not None and not self._ours():  # a forked copy: its parent's processes, left be
            self._workers = self._run = None
        if self._workers is not None and all(w.process.is_alive() for w in self._workers):
            return self._workers
        self.close()
        self._workers = [_Worker(self.context, self.dataset, k, self.threads, self.prefetch) for k in range(self.threads)]
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _stop, self._workers, self._owner)
        return self._workers

    def _call_off(self, run: deque) -> None:
        """An epoch left early: each process still in it is told to stop (and woken, should it
        wait for a grant), and what it sends till it has is read and dropped, so that the next
        epoch starts clean. Interrupted, or a process gone: the processes are ended. In a forked
        process, nothing: the processes are its parent's."""
        self._run = None
        if not self._ours():
            return
        try:
            for worker in run:
                worker.halt()
            for worker in run:
                while worker.receive()[0] == "batch":
                    pass
        except _Gone:
            self.close()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Ends the processes (also done as the loader is collected, or this process ends)."""
        with self._lock:
            if self._workers is not None:
                self._run = None
                self._finalizer()
                self._workers = None


class _Gone(RuntimeError):
    pass


class _Worker:
    """A feed process, its pipe, its grants (a semaphore: `prefetch` to start, one more for each
    batch the main process takes) and its epoch's call-off (`stop`)."""

    def __init__(self, context, dataset, k: int, n: int, prefetch: int):
        self.k, self.grants, self.stop = k, context.Semaphore(prefetch), context.RawValue("b", 0)
        self.conn, theirs = context.Pipe()
        parent = (os.getpid(), process_start(os.getpid()))
        self.process = context.Process(target=_work, args=(dataset, k, n, theirs, self.grants, self.stop, parent),
                                       name=f"augpipe-feed-{k}", daemon=True)
        self.process.start()
        _FEEDS.add(self.process)
        theirs.close()

    def begin(self, job: tuple, prefetch: int) -> None:
        """An epoch's job, the process waiting for one: its grants reset to `prefetch` (a
        call-off woke it with one more), its call-off flag down."""
        while self.grants.acquire(False):
            pass
        for _ in range(prefetch):
            self.grants.release()
        self.stop.value = 0
        self.tell(job)

    def halt(self) -> None:
        """A process in an epoch stops there, woken by a grant should it wait for one."""
        self.stop.value = 1
        self.grants.release()

    def tell(self, message) -> None:
        try:
            self.conn.send(message)
        except OSError:
            self._gone()

    def receive(self) -> tuple[str, object]:
        """The process's next message; `_Gone` if it ended without one (only the process holds
        the pipe's other end: its end is the pipe's end)."""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self._gone()

    def _gone(self):
        self.process.join(5)
        raise _Gone(f"feed process {self.k} ended unexpectedly (exit code {self.process.exitcode})") from None


_FEEDS: weakref.WeakSet = weakref.WeakSet()  # the feed processes this process started


def _forget_feeds() -> None:
    """In a process forked from this one (by `os.fork`, not multiprocessing): multiprocessing's
    exit there would terminate every daemon process in its copy of this one's children, our feed
    processes among them."""
    import multiprocessing.process

    getattr(multiprocessing.process, "_children", set()).difference_update(_FEEDS)
    _FEEDS.clear()


os.register_at_fork(after_in_child=_forget_feeds)


def _stop(workers: list[_Worker], owner: int) -> None:
    if os.getpid() != owner:  # a forked process's copy of the loader, collected there: not its processes
        return
    for worker in workers:
        worker.halt()
        try:
            worker.conn.send(None)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    for worker in workers:
        while worker.process.is_alive() and time.monotonic() < deadline:
            try:  # what it still sends is read and dropped: a process in the middle of a send ends too
                if worker.conn.poll(0.05):
                    worker.conn.recv()  # unpickled: its shared memory is counted let go of
            except (EOFError, OSError):
                worker.process.join(0.05)
            except Exception:  # noqa: BLE001 - a message cut short by the process's end
                pass
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
    worker_memory.forget_gone()  # their slots' mappings here: torch removes the files once no one holds them


def _work(dataset, k: int, n: int, conn, grants, stop, parent: tuple) -> None:
    """A feed process: epoch after epoch, its batches as it is granted them, till told to end."""
    from augpipe.readers import _start_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle, once
    _start_worker(None, k)
    torch.set_num_threads(1)
    if isinstance(getattr(dataset, "_epoch", None), _Epoch):  # each job's own: set_epoch here must not reach
        dataset._epoch = _Epoch(shared=False)                 # the main process (it may have set the next)
    if isinstance(dataset, (ShardDataset, ShardIterable)):
        dataset._sends = True  # each batch is sent as made: its dict targets made on the other side
    parent = (*parent, os.getppid())
    threading.Thread(target=_watch, args=(parent,), name="augpipe-feed-watch", daemon=True).start()
    while True:
        while not conn.poll(_LOOK):
            if _orphaned(parent):
                return
        job = conn.recv()
        if job is None:
            return
        try:
            _epoch(dataset, k, n, conn, grants, stop, parent, *job)
        except _Closed:
            return


def _watch(parent: tuple) -> None:
    """Ends this process once the main process is gone, whatever it is doing: a batch that never
    ends (a transform in an endless loop) kept it busy past its parent's death, which the waits
    between batches alone look for."""
    while True:
        time.sleep(_LOOK)
        if _orphaned(parent):
            os._exit(1)


def _orphaned(parent: tuple) -> bool:
    """Whether the main process is gone: this process has a new parent (it was the main
    process, or a fork server), or the main process (pid, start) is no more."""
    pid, started, first_parent = parent
    return os.getppid() != first_parent or not alive(pid, started)


def _epoch(dataset, k: int, n: int, conn, grants, stop, parent: tuple, epoch: int, batches: list | None) -> None:
    try:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        source = dataset._stream(k, n) if batches is None else map(dataset._collated, batches)
        while True:
            while not grants.acquire(timeout=_LOOK):
                if _orphaned(parent):
                    raise _Closed
            if stop.value:  # grants are reset at the next epoch's start: none is given back
                conn.send(("stopped", None))
                return
            batch = next(source, _END)
            if batch is _END:
                conn.send(("done", None))
                return
            conn.send(("batch", batch))
    except Exception as exc:  # noqa: BLE001 - raised again in the main process
        conn.send(("error", exc if _as_is(exc) else _wrapped(k)))


def _wrapped(k: int):
    """The error as a DataLoader's worker sends it: its traceback in its message; as a RuntimeError
    where its class does not pickle (one made inside a function), which would end the process."""
    from torch._utils import ExceptionWrapper

    wrapper = ExceptionWrapper(where=f"in feed process {k}")
    try:
        pickle.dumps(wrapper)
    except Exception:  # noqa: BLE001 - any pickling failure
        wrapper.exc_type = RuntimeError
    return wrapper


def _as_is(exc: Exception) -> bool:
    """augpipe's own one line (a shard or row named) is raised in the main process as it is, where
    it pickles whole; anything else as a DataLoader's worker's error, its traceback in its message."""
    if not isinstance(exc, AugpipeError):
        return False
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an error of its own making (arguments of its own)
        return False
    return True


class _Closed(BaseException):
    """The main process has closed the loader, or is gone."""


_END = object()
