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
