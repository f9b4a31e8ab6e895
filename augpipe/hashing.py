"""The content pass: each source's sha256 (identical files share a split) and its size (the
recipe's dry run), read through its store. Kept apart from `jobs` so that the process that hashes
while the command loads the recipe imports no more than a store and the image headers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from augpipe.errors import SkipInput
from augpipe.store import read_or_skip, store_for

if TYPE_CHECKING:
    from augpipe.jobs import RunSpec


@dataclass(frozen=True)
class HashJob:
    names: tuple[str, ...]
    cost: int  # bytes to read


def hash_sources(batch: HashJob, spec: RunSpec, progress: Callable[[int], None] | None = None) -> list[tuple]:
    """(name, sha256, width, height, None) for each source, or (name, None, 0, 0, reason) for
    one that cannot be used. The content decides the split; the sizes size the recipe's dry run."""
    return hash_named(store_for(spec.source), batch.names, spec.max_pixels, progress)


def hash_named(store, names, max_pixels: int, progress: Callable[[int], None] | None = None) -> list[tuple]:
    """`hash_sources` of these names in `store`."""
    from augpipe.decode import oriented_size

    out = []
    for name, data in store.read_many(names, partial(read_or_skip, store)):
        try:
            if isinstance(data, SkipInput):
                raise data
            width, height = oriented_size(data, max_pixels)
            out.append((name, hashlib.sha256(data).hexdigest(), width, height, None))
        except SkipInput as exc:
            out.append((name, None, 0, 0, exc.reason))
        if progress is not None:
            progress(1)
    return out


def hash_jobs(names: list[tuple[str, int]], per_job: int = 256) -> list[HashJob]:
    """(name, size) pairs in jobs of `per_job` files."""
    return [HashJob(tuple(n for n, _ in names[i:i + per_job]), sum(s for _, s in names[i:i + per_job]))
            for i in range(0, len(names), per_job)]


def hash_in_threads(jobs: list[HashJob], store, max_pixels: int, threads: int, send) -> list[tuple]:
    """Every job's `hash_named`, in order, by `threads` threads (reads that wait overlap);
    `send("progress", n)` after each."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return _joined(pool.map(lambda job: hash_named(store, job.names, max_pixels), jobs), send)


def hash_in_processes(jobs: list[HashJob], store, max_pixels: int, processes: int, send) -> list[tuple]:
    """The same, the jobs cut into `processes` runs in order: the first run in this process,
    each other in a process forked from it (reads that wait on nothing leave the digests, CPU
    alone, and threads of one process would contend for the GIL). A helper sends its progress
    through `send` itself, as it goes (a message that small is one atomic write to a pipe), and
    its results to this process."""
    from augpipe.engines.local import Forked

    n = min(processes, len(jobs))
    runs = [jobs[k * len(jobs) // n:(k + 1) * len(jobs) // n] for k in range(n)]
    helpers = [Forked(_hash_helper, run, store, max_pixels, send) for run in runs[1:]]
    try:
        hashed = _hash_run(runs[0] if runs else [], store, max_pixels, send)
        for helper in helpers:
            hashed += helper.receive("hashed")
        return hashed
    finally:
        for helper in helpers:
            helper.close()


def _hash_run(jobs: list[HashJob], store, max_pixels: int, send) -> list[tuple]:
    return _joined((hash_named(store, job.names, max_pixels) for job in jobs), send)


def _joined(chunks: Iterable[list[tuple]], send) -> list[tuple]:
    """The jobs' results in order, `send("progress", n)` after each."""
    hashed = []
    for chunk in chunks:
        hashed += chunk
        send("progress", len(chunk))
    return hashed


def _hash_helper(results, jobs: list[HashJob], store, max_pixels: int, progress) -> None:
    results("hashed", _hash_run(jobs, store, max_pixels, progress))
