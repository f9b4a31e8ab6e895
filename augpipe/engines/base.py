"""The Engine contract: what `engines/local.py` (a process pool) and `engines/ray.py` (Ray Core
tasks) implement, and all that `pipeline.expand` asks of an engine.

A run has the phases of Ray Data's Datasink, split between the output and the engine:
`output.OutputFolder.prepare` (on_write_start: own the folder, resume), the engine's `map` over
the shard tasks (write: each task writes, publishes and records one shard, `jobs.write_shard`),
`OutputFolder.finish` (on_write_complete: the manifest, last). The engine only runs tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable


class Task(Protocol):
    """A pure task (`hashing.hash_sources`, `jobs.write_shard`): a module-level function, so that it
    pickles, whose result depends only on its item and the run's spec. `progress(n)` says n more
    images are done; the engine may batch it. Items have a `cost` (bytes or rows to handle)."""

    def __call__(self, item: Any, spec: Any, progress: Callable[[int], None] | None = None) -> Any: ...


@runtime_checkable
class Engine(Protocol):
    """Runs tasks and hands back their results.

    `with engine:` holds the workers (a pool, a Ray connection) for every `map` of a run and
    releases them at the end, error or not: nothing keeps running for the run after it.
    `start_early()` may begin starting workers before the caller's own slow steps.
    `map(func, items, spec, on_progress)` calls `func(item, spec, progress)` for every item,
    anywhere, and yields each result as it finishes, in any order; the costliest items start first.
    A task's exception is raised from `map` as the task raised it (not wrapped); a worker that
    dies may be retried, or fails the run. `on_progress(n)` is called in the caller's process.
    `describe()` says what ran, for the summary and the manifest: at least `name`, `nodes`, `cpus`,
    `workers` and `retried_tasks`.
    """

    name: str

    def start_early(self) -> None: ...
    def __enter__(self) -> Engine: ...
    def __exit__(self, *exc) -> None: ...
    def map(self, func: Task, items: list, spec: Any, on_progress: Callable[[int], None]) -> Iterator: ...
    def describe(self) -> dict: ...
