"""Engines run pure tasks (`hashing.hash_sources`, `jobs.write_shard`) and hand back their results.

The contract is `engines.base.Engine`; one is chosen here: `with make_engine(...) as engine:
engine.map(func, items, spec, progress)` yields each item's result as it finishes. Engines are
imported only when chosen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from augpipe.engines.base import Engine
from augpipe.errors import UsageError

ENGINES = ("local", "ray")


def make_engine(name: str = "local", workers: int | None = None) -> Engine:
    if name == "local":
        from augpipe.engines.local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        from augpipe.engines.ray import RayEngine

        return RayEngine(workers)
    raise UsageError(f"unknown engine '{name}': choose {' or '.join(ENGINES)}")


class Batched:
    """A task's progress, passed on at most every 0.1 s: a message an image would cost more than
    it tells."""

    def __init__(self, send: Callable[[int], None]):
        self.send, self.count, self.last = send, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.count += n
        if time.monotonic() - self.last > 0.1:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.send(self.count)
        self.count, self.last = 0, time.monotonic()
