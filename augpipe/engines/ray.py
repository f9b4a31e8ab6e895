"""The Ray engine: the same pure tasks as Ray Core tasks, on a cluster or a local Ray.

`RAY_ADDRESS` (or `ray.init` done by the caller) picks an existing cluster; otherwise a local
Ray is started for the run and shut down at its end, error or not. A task returns only its
result (a shard's record), never image bytes; a task whose worker dies is retried (up to
`MAX_RETRIES`), an error in our code is not, and ends the run as it would locally.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from augpipe import signals
from augpipe.engines import Batched
from augpipe.errors import AugpipeError, EngineError, UsageError
from augpipe.processes import GUARD_TAG, Library, descendants, end_leftovers, guard, tree_of

MAX_RETRIES = 3
POLL_SECONDS = 0.2
# For the tests: a task whose index is named here kills its worker once, mid-task, when the
# marker file does not exist yet (then creates it): a worker's death, retried by Ray.
KILL_ONCE = "AUGPIPE_TEST_KILL_WORKER_ONCE"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'augpipe[ray]'") from None
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, workers: int | None = None):
        self.workers = workers  # CPUs of a local Ray started for the run; None: all
        self._ray = None
        self._started_here = False
        self._guard = None
        self._sigterm = None  # the caller's SIGTERM handler, which ray.init replaces with its own
        self._progress = None
        self._pending: list = []
        self.retried = 0
        self.nodes_used = 0

    def start_early(self) -> None:
        pass

    def __enter__(self) -> RayEngine:
        ray = self._ray = _import_ray()
        if not ray.is_initialized():
            self._sigterm = _main_thread_sigterm()
            os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a data job does not report home
            # Ray's C++ side otherwise catches SIGTERM itself, prints a stack and aborts the driver
            # before augpipe can clean up and say one line
            os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
            try:
                self._start(ray)
            finally:
                signals.reinstall()
        return self

    def _start(self, ray) -> None:
        """ray.init; a local Ray that fails to start (two started at the same instant: a raylet
        CHECK, "timed out during startup") is tried once more, then said as Ray's own failure."""
        for attempt in (1, 2):
            before = set(descendants(os.getpid()))
            try:
                self._init(ray)
                return
            except BaseException as exc:
                self._abandon(ray, before)
                if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM:  # ray.init's own handler
                    raise signals.Terminated() from None
                if not isinstance(exc, Exception) or isinstance(exc, AugpipeError):
                    raise
                if os.environ.get("RAY_ADDRESS"):
                    raise EngineError(f"cannot join the Ray cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}: "
                                      f"{_first_line(exc)}") from None
                if attempt == 2:
                    raise EngineError(f"a local Ray did not start, twice ({_first_line(exc)}): start a cluster "
                                      "(`ray start --head`) and pass its address in RAY_ADDRESS") from None

    def _abandon(self, ray, before: set[int]) -> None:
        """A start cut short (Ctrl-C, SIGTERM, an error): end whatever it had started."""
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - half started: what follows ends the rest
            pass
        started = set(descendants(os.getpid())) - before
        lib = _library(ray)
        end_leftovers(tree_of([pid for pid in started if lib.runs(pid)]))  # not the caller's own
        self._end_guard()

    def _init(self, ray) -> None:
        options = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**options)
            return
        # before ray.init: a run killed during Ray's start-up takes what Ray had started with it
        os.environ[GUARD_TAG] = f"{os.getpid()}-{time.time_ns()}"
        self._guard = guard([], os.environ[GUARD_TAG], _library(ray))
        try:
            ray.init(address="local", num_cpus=self.workers, include_dashboard=False, **options)
        finally:
            # Ray's processes inherited the tag (the workers from the raylet); what else this
            # process starts from now on is not Ray's
            os.environ.pop(GUARD_TAG, None)
        self._started_here = True

    def _end_guard(self) -> None:
        """Ray's processes were ended the normal way: the guard goes, ending nothing, and the
        caller's SIGTERM handler is back."""
        os.environ.pop(GUARD_TAG, None)
        if self._guard is not None:
            self._guard.kill()
            self._guard.wait()
            self._guard = None
        if self._sigterm is not None and _main_thread_sigterm() is not None:
            signal.signal(signal.SIGTERM, self._sigterm)

    def __exit__(self, *exc) -> None:
        ray = self._ray
        try:
            if not self._started_here:
                # Ctrl-C or an error: nothing keeps running for us on a cluster we do not own. (A
                # local Ray's shutdown ends its tasks; cancelling them as well races tasks that
                # Ctrl-C ended already, which Ray 2.60 answers with a crash of the driver.)
                for ref in self._pending:
                    ray.cancel(ref, force=True)
                if self._progress is not None:
                    ray.kill(self._progress)
        except Exception:  # noqa: BLE001 - the cluster may be gone already; shutting down matters more
            pass
        finally:
            if self._started_here:
                ours = _ray_processes(ray)
                try:
                    ray.shutdown()  # a second Ctrl-C may cut it short
                finally:
                    end_leftovers(ours)  # under load its workers and agents outlive the shutdown a while
                    self._end_guard()

    def describe(self) -> dict:
        ray = self._ray
        try:
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            cpus = ray.cluster_resources().get("CPU", 0)
        except Exception:  # noqa: BLE001 - describing must not fail a finished run
            nodes, cpus = 0, 0
        return {"name": self.name, "nodes": nodes, "cpus": cpus, "workers": int(cpus), "nodes_used": self.nodes_used,
                "retried_tasks": self.retried, "started_for_the_run": self._started_here}

    def map(self, func: Callable, items: list, spec, on_progress: Callable[[int], None]) -> Iterator:
        ray = self._ray
        if self._progress is None:
            self._progress = ray.remote(num_cpus=0)(_Progress).remote()
        # SPREAD: tasks over every node, not packed on the first while it keeps up (small tasks were)
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False,
                            scheduling_strategy="SPREAD")(_run_task)
        spec_ref = ray.put(spec)
        order = sorted(range(len(items)), key=lambda i: -items[i].cost)
        key = f"{time.monotonic_ns()}"  # this map's tasks, apart from an earlier pass's
        kill_once = os.environ.get(KILL_ONCE)
        pending = [remote.remote(func, items[i], spec_ref, self._progress, f"{key}/{i}", kill_once) for i in order]
        self._pending = pending
        with signals.deferred():
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS,
                                          fetch_local=False)
                self._pending = pending
                self._report(on_progress)
                signals.check()
                for ref in ready:
                    yield _result(ray, ref)
            self._report(on_progress)

    def _report(self, on_progress: Callable[[int], None]) -> None:
        done, self.retried, self.nodes_used = self._ray.get(self._progress.take.remote())
        if done:
            on_progress(done)


def _main_thread_sigterm():
    """SIGTERM's handler, where this is the main thread (which alone may set it); else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _library(ray) -> Library:
    """Ray's processes: its programs and scripts are files in its package; its workers and agents
    rename themselves "ray::..."."""
    folder = os.path.dirname(getattr(ray, "__file__", None) or "") or "/nonexistent-ray"
    return Library(tuple({folder, os.path.realpath(folder)}), ("ray::",))


def _ray_processes(ray) -> list[tuple[int, str]]:
    """The processes of the Ray started for the run: its node's (GCS, raylet, ...) and all below
    them (workers, agents), not others of this process's children. (Ray names its node's
    processes only in a private attribute; none are named where that moved.)"""
    try:
        node = ray._private.worker._global_node
        roots = [info.process.pid for infos in node.all_processes.values() for info in infos]
    except Exception:  # noqa: BLE001 - another Ray's layout
        return []
    return tree_of(roots)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _result(ray, ref):
    """The task's result, or the task's own exception (not Ray's wrapper): the same one-line
    error as the local engine."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


class _Progress:
    """Images done, by task: a retried task's earlier progress is taken back."""

    def __init__(self):
        self.by_task: dict[str, int] = {}
        self.starts: dict[str, int] = {}
        self.nodes: set[str] = set()
        self.pending = 0

    def start(self, task: str, node: str) -> None:
        self.starts[task] = self.starts.get(task, 0) + 1
        self.nodes.add(node)
        self.pending -= self.by_task.pop(task, 0)

    def add(self, task: str, n: int) -> None:
        self.by_task[task] = self.by_task.get(task, 0) + n
        self.pending += n

    def take(self) -> tuple[int, int, int]:
        n, self.pending = self.pending, 0
        return n, sum(c - 1 for c in self.starts.values()), len(self.nodes)


def _run_task(func: Callable, item, spec, progress, task_key: str, kill_once: str | None = None):
    """One task on a Ray worker: progress batched to the driver's actor, at most every 0.1 s."""
    import ray

    # awaited: the actor takes one caller's calls in order but not the driver's among them, so a
    # call still on its way when the task's result reaches the driver would be missed by its last
    # look (a node used, counted as not; the last images)
    ray.get(progress.start.remote(task_key, ray.get_runtime_context().get_node_id()))
    last = None

    def add(n: int) -> None:
        nonlocal last
        last = progress.add.remote(task_key, n)

    batched = Batched(add)
    report = batched
    if kill_once and func.__name__ == "write_shard" and task_key.endswith("/0"):
        report = _DieOnce(batched, kill_once)
    try:
        return func(item, spec, report)
    finally:
        batched.flush()
        if last is not None:
            ray.get(last)


class _DieOnce:
    """The worker dies after its third image, half-way through a shard, unless it did before."""

    def __init__(self, batched: Batched, marker: str):
        self.batched, self.marker, self.seen = batched, marker, 0

    def __call__(self, n: int) -> None:
        self.batched(n)
        self.seen += n
        if self.seen >= 3 and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            self.batched.flush()
            os._exit(1)
