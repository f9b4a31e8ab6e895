"""Engines run pure tasks (`tasks.hash_sources`, `tasks.write_shard`) and hand back their results.

One interface, chosen here: `with make_engine(...) as engine: engine.map(func, items, job,
progress)` yields each item's result as it finishes; `engine.describe()` says what ran (for the
summary and the manifest). Engines are imported only when chosen.
"""

from __future__ import annotations

from augpipe.errors import UsageError

ENGINES = ("local", "ray")


def make_engine(name: str = "local", workers: int | None = None):
    if name == "local":
        from augpipe.engines.local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        from augpipe.engines.ray import RayEngine

        return RayEngine(workers)
    raise UsageError(f"unknown engine '{name}': choose {' or '.join(ENGINES)}")
