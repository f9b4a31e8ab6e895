"""The pure tasks every engine runs (augpipe/jobs.py): writing one shard when the folder or the
sources change under it."""

from __future__ import annotations

import json
import os

import pytest

from augpipe.errors import OutputError
from augpipe.sample import SourceItem, augment_sample
from augpipe.targets import kind_for
from conftest import recipe


def test_a_shard_is_not_published_once_another_run_owns_the_folder(tmp_path, folder):
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe

    out = tmp_path / "out"
    out.mkdir()
    (out / ".augpipe.lock").write_text(json.dumps({"token": "someone-else", "pid": os.getpid()}))
    recipe = load_recipe("flips")
    found = scan(str(folder))
    task = make_plan(found, recipe, 1, 0.0, False, 1 << 30).shards[0]
    job = RunSpec(str(folder), str(out), recipe, 0, 10**8, False, tuple(found.classes), True, lock_token="mine")
    with pytest.raises(OutputError, match="another run took over"):
        write_shard(task, job)
    assert not list(out.glob("*.parquet"))


def test_a_fifo_swapped_in_after_the_scan_is_skipped_not_waited_on(tmp_path, folder):
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe

    out = tmp_path / "out"
    recipe = load_recipe("flips")
    found = scan(str(folder))
    task = make_plan(found, recipe, 1, 0.0, False, 1 << 30).shards[0]
    victim = folder / task.sources[0].relpath
    victim.unlink()
    os.mkfifo(victim)
    (out / ".augpipe" / "tmp").mkdir(parents=True)
    job = RunSpec(str(folder), str(out), recipe, 0, 10**8, False, tuple(found.classes), True)
    record = write_shard(task, job)
    assert record.skipped == [[task.sources[0].relpath, "not a regular file (a pipe, socket or device)"]]


def test_a_mask_that_changes_during_the_run_is_a_recorded_skip(scenes):
    from augpipe.formats import scan
    from augpipe.store import open_store

    found = scan(str(scenes["masks"]))
    f = found.files[0]
    store = open_store(str(scenes["masks"]))
    from augpipe.errors import SkipInput

    task = SourceItem(f.relpath, None, (0,), None, f.target, extra_sha256="f" * 64)
    with pytest.raises(SkipInput, match="its mask changed during the run"):
        augment_sample(store.read_bytes(f.relpath), task, recipe("[HorizontalFlip]"), 0, 10**8,
                       kind=kind_for("segmentation"), extra=store.read_bytes(f.target.path))


def test_a_copys_random_streams_made_ahead_are_those_made_when_asked():
    import random

    import numpy as np

    from augpipe.sample import _MADE, make_streams, seeded

    def draws(streams):
        rng, py_rng = streams
        return rng.integers(0, 2**62, 4).tolist(), rng.random(), py_rng.random(), py_rng.getrandbits(64)

    fresh = draws((np.random.default_rng(7), random.Random(7)))
    make_streams([7, 8])
    assert set(_MADE) == {7, 8}
    assert draws(seeded(7)) == fresh and 7 not in _MADE  # handed out once
    assert draws(seeded(7)) == fresh  # asked again: made again, the same
    make_streams([9])
    assert set(_MADE) == {9}  # those not taken are let go
    make_streams(())


@pytest.mark.parametrize("ahead", [7, 2])  # two sources' 3 copies a time; of one source, 2 of its 3
def test_a_shards_rows_are_the_pure_functions_whatever_streams_were_made_ahead(tmp_path, monkeypatch, ahead):
    """The shard task makes its copies' random streams a run of sources at a time (as many as
    STREAMS_AHEAD copies allow, one source at least, STREAMS_AHEAD at most); its rows are
    `augment_sample`'s, called on each source alone, byte for byte."""
    import pyarrow.parquet as pq

    from augpipe import jobs
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from conftest import make_folder

    folder = make_folder(tmp_path / "data", per_class=4)
    monkeypatch.setattr(jobs, "STREAMS_AHEAD", ahead)
    out = tmp_path / "out"
    (out / ".augpipe" / "tmp").mkdir(parents=True)
    recipe = load_recipe("classic")
    found = scan(str(folder))
    task = make_plan(found, recipe, 3, 0.0, False, 1 << 30).shards[0]
    assert len(task.sources) > 3
    write_shard(task, RunSpec(str(folder), str(out), recipe, 5, 10**8, False, tuple(found.classes), True))
    got = pq.read_table(next(out.glob("*.parquet"))).to_pylist()
    want = [row for item in task.sources
            for row in augment_sample((folder / item.relpath).read_bytes(), item, recipe, 5, 10**8).rows]
    assert len(got) == len(want) == sum(len(item.copies) for item in task.sources)
    assert [(r["source"], r["copy"], r["image"]["bytes"]) for r in got] == \
           [(r["source"], r["copy"], r["image"]["bytes"]) for r in want]


def test_the_streams_made_ahead_are_bounded_by_copies_not_sources(monkeypatch):
    from types import SimpleNamespace

    from augpipe import jobs
    from augpipe.sample import _MADE, make_streams

    monkeypatch.setattr(jobs, "STREAMS_AHEAD", 7)
    sources = [SimpleNamespace(relpath=f"s{i}", copies=tuple(range(n))) for i, n in enumerate([3, 3, 3, 300, 1, 1])]
    ends, first = [], 0
    while first < len(sources):
        first = jobs._make_streams(sources, first, 0)
        ends.append((first, len(_MADE)))
    # copy 0 (the original) draws nothing; of a source of more copies, STREAMS_AHEAD (memory
    # flat where --balance gives a source 100,000 copies: the rest are made when asked)
    assert ends == [(2, 4), (3, 2), (4, 7), (6, 0)]
    make_streams(())
