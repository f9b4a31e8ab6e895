"""An output folder's life (augpipe/output.py): owned by one run, resumed, refused when the sources or
the recipe changed, overwritten only where augpipe wrote."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from augpipe import ExpandOptions, expand
from augpipe.errors import OutputError, RunLockedError
from conftest import ENV, as_if_killed, augpipe, make_folder, shard_hashes

QUIET = dict(progress=False, workers=1)


def _expand_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "augpipe", "expand", str(data), "-r", "classic", "-o", str(out),
            "--shard-size", "250KB", "-w", "2", "-q", "--seed", "3"]


def test_a_changed_source_is_said_in_words(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(copies=0, **QUIET))
    (folder / "cat" / "cat_000.jpg").unlink()
    with pytest.raises(OutputError) as caught:
        expand(folder, "flips", out, ExpandOptions(copies=0, **QUIET))
    assert "made before the source files changed (a file was added, removed or edited since)" in str(caught.value)
    assert "source_files" not in str(caught.value)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path, folder):
    """The first run is a live process that holds the folder: the second is refused with a line
    naming it, and touches nothing."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from augpipe.output import RunLock; from augpipe.store import "
         f"open_store; RunLock.acquire(open_store({str(out)!r})); print('held', flush=True); time.sleep(120)"],
        env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(augpipe("expand", folder, "-r", "flips", "-o", out, "--overwrite", "-w", "1", "-q"),
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "being written by another augpipe run" in second.stderr
        assert f"pid {holder.pid}" in second.stderr
        assert sorted(p.name for p in out.iterdir()) == [".augpipe.lock"]
    finally:
        holder.kill()
        holder.wait()
    expand(folder, "flips", out, ExpandOptions(**QUIET))  # its holder dead, the lock is taken over
    assert (out / "_augpipe.json").is_file()


def test_a_dead_runs_lock_is_taken_over(tmp_path, folder):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".augpipe.lock").write_text(json.dumps({"token": "x", "pid": dead.pid, "host": os.uname().nodename}))
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert (out / "_augpipe.json").is_file() and not (out / ".augpipe.lock").exists()


def test_a_live_lock_from_this_process_is_refused(tmp_path, folder):
    from augpipe.output import RunLock
    from augpipe.store import open_store

    out = tmp_path / "out"
    out.mkdir()
    lock = RunLock.acquire(open_store(out))
    with pytest.raises(RunLockedError, match="being written by another augpipe run"):
        expand(folder, "flips", out, ExpandOptions(**QUIET))
    lock.release()


def test_a_source_changed_in_place_at_the_same_size_is_noticed(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    a, b = folder / "cat" / "cat_000.jpg", folder / "cat" / "cat_001.jpg"
    data = bytearray(a.read_bytes())
    data[-3] ^= 0xFF  # same size, other content
    a.write_bytes(bytes(data))
    with pytest.raises(OutputError, match="made before the source files changed"):
        expand(folder, "flips", out, ExpandOptions(**QUIET))
    m = expand(folder, "flips", out, ExpandOptions(overwrite=True, **QUIET))
    assert not m.get("up_to_date")
    assert b.exists()


def test_with_split_by_path_a_touched_source_is_noticed_by_its_mtime(tmp_path, folder):
    out = tmp_path / "out"
    options = ExpandOptions(split_by="path", **QUIET)
    expand(folder, "flips", out, options)
    assert expand(folder, "flips", out, options).get("up_to_date")
    path = folder / "dog" / "dog_003.jpg"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(OutputError, match="made before the source files changed"):
        expand(folder, "flips", out, options)


SHARDED = dict(workers=1, shard_size=30_000, progress=False)


def _sharded(tmp_path) -> tuple[Path, Path, dict]:
    """A source expanded into a few shards: (source, output, the shards' sha256)."""
    data, out = make_folder(tmp_path / "data", per_class=40), tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(**SHARDED))
    return data, out, shard_hashes(out)


def _damage(shard: Path) -> None:
    """One byte in the middle of the shard flipped: the same size, another content."""
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))


def _verify(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augpipe", "inspect", str(out), "--verify"], capture_output=True,
                          text=True, env=ENV, stdin=subprocess.DEVNULL)


def test_a_kept_shard_damaged_at_the_same_size_is_redone_on_resume(tmp_path):
    data, out, expected = _sharded(tmp_path)
    manifest = as_if_killed(out)
    _damage(out / manifest["shards"][1]["name"])
    done = expand(data, "flips", out, ExpandOptions(**SHARDED))
    assert shard_hashes(out) == expected
    assert done["timing"]["shards_resumed"] == len(expected) - 1


def test_overwrite_writes_this_runs_own_output_anew_and_verify_names_it_as_the_mend(tmp_path):
    data, out, expected = _sharded(tmp_path)
    assert expand(data, "flips", out, ExpandOptions(**SHARDED)).get("up_to_date")
    damaged = out / json.loads((out / "_augpipe.json").read_text())["shards"][1]["name"]
    _damage(damaged)
    told = _verify(out)
    assert told.returncode == 1 and f"{damaged.name}: checksum mismatch" in told.stdout
    assert f"  mend      run the expand that made it again, which writes the output anew: augpipe expand {data} " \
           f"--recipe flips --out {out} --copies " in told.stdout
    again = expand(data, "flips", out, ExpandOptions(overwrite=True, **SHARDED))
    assert not again.get("up_to_date") and again["timing"]["shards_resumed"] == 0
    assert shard_hashes(out) == expected
    assert expand(data, "flips", out, ExpandOptions(overwrite=True, **SHARDED))["timing"]["shards_resumed"] == 0
    told = _verify(out)
    assert told.returncode == 0 and "  mend  " not in told.stdout and "all is well" in told.stdout


def test_a_rerun_over_a_damaged_shard_writes_the_output_anew_and_says_why(tmp_path):
    data, out, expected = _sharded(tmp_path)
    _damage(out / json.loads((out / "_augpipe.json").read_text())["shards"][0]["name"])
    again = expand(data, "flips", out, ExpandOptions(**SHARDED))
    assert not again.get("up_to_date") and shard_hashes(out) == expected
    assert again["mended"] == "a shard of this output was damaged or gone since it was written: every shard written anew"
    assert "mended" not in json.loads((out / "_augpipe.json").read_text())
    assert "mended" not in expand(data, "flips", out, ExpandOptions(**SHARDED))


def test_overwrite_after_an_interrupted_run_of_the_same_arguments_keeps_no_shard(tmp_path):
    data, out, expected = _sharded(tmp_path)
    as_if_killed(out)
    assert expand(data, "flips", out, ExpandOptions(**SHARDED))["timing"]["shards_resumed"] == len(expected)
    as_if_killed(out)
    done = expand(data, "flips", out, ExpandOptions(overwrite=True, **SHARDED))
    assert done["timing"]["shards_resumed"] == 0 and shard_hashes(out) == expected


def test_verify_names_no_mend_for_a_shard_the_run_never_wrote(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    shutil.copy(next(out.glob("train-0*.parquet")), out / "train-00007-of-00009.parquet")
    told = _verify(out)
    assert told.returncode == 1 and "extra shard, not in the manifest" in told.stdout and "  mend  " not in told.stdout


def test_verify_names_no_mend_for_a_rows_own_problem_that_a_rerun_writes_again(tmp_path, folder):
    """A black source's copies are of one flat colour: a rerun writes them so again (a hostile
    tester's: the mend line followed, the same problem and the same line)."""
    Image.new("RGB", (40, 30)).save(folder / "cat" / "black.png")
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    told = _verify(out)
    assert told.returncode == 1 and "is a single flat colour" in told.stdout and "  mend  " not in told.stdout


def test_overwrite_deletes_only_what_augpipe_wrote(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    alice = out / "train-curated-of-alice.parquet"
    shutil.copy(next(out.glob("train-0*.parquet")), alice)
    (out / "notes.txt").write_text("mine")
    expand(folder, "classic", out, ExpandOptions(overwrite=True, **QUIET))
    assert alice.is_file() and (out / "notes.txt").read_text() == "mine"


def test_leftovers_of_a_run_killed_after_its_manifest_are_cleaned(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    (out / ".augpipe" / "tmp").mkdir(parents=True)
    (out / "._augpipe.json.4242.tmp").write_text("{")
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert m.get("up_to_date")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_overwrite_leaves_a_file_merely_named_like_a_shard(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))  # train and validation shards, no test split
    theirs = out / "test-00000-of-00001.parquet"
    shutil.copy(next(out.glob("train-*.parquet")), theirs)
    expand(folder, "rotations", out, ExpandOptions(overwrite=True, **QUIET))
    assert theirs.is_file()


def test_overwrite_after_a_killed_run_deletes_the_shards_it_planned(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(workers=1, shard_size=30_000, progress=False))
    killed = as_if_killed(out)  # no manifest left: only the run's plan names its shards
    m = expand(data, "flips", out, ExpandOptions(workers=1, shard_size=10**9, progress=False, overwrite=True))
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(s["name"] for s in m["shards"])
    assert len(killed["shards"]) > len(m["shards"])


@pytest.mark.parametrize("split_by", ["content", "path"])
def test_a_mask_changed_in_place_is_noticed(scenes, tmp_path, split_by):
    import os
    import shutil

    from augpipe.errors import OutputError

    data = tmp_path / "masks"
    shutil.copytree(scenes["masks"], data)
    options = ExpandOptions(split_by=split_by, **QUIET)
    expand(data, "flips", tmp_path / "out", options)
    mask = data / "masks" / "scene_002.png"
    stat = mask.stat()
    Image.fromarray(np.ones((64, 80), np.uint8), "L").save(mask)
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(OutputError, match="made before the source files changed"):
        expand(data, "flips", tmp_path / "out", options)


def test_rerun_is_up_to_date_and_another_recipe_is_refused_without_overwrite(folder, tmp_path):
    from augpipe.errors import OutputError

    out = tmp_path / "out"
    first = expand(folder, "flips", out, ExpandOptions(**QUIET))
    again = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert again.get("up_to_date") and again["shards"] == first["shards"]
    with pytest.raises(OutputError, match="another recipe"):
        expand(folder, "rotations", out, ExpandOptions(**QUIET))
    with pytest.raises(OutputError, match="another seed"):
        expand(folder, "flips", out, ExpandOptions(seed=9, **QUIET))
    with pytest.raises(OutputError, match=r"made with other options \(copies 2, now 3; val_fraction 0.1, now 0.2\): "):
        expand(folder, "flips", out, ExpandOptions(copies=3, val_fraction=0.2, **QUIET))
    with pytest.raises(OutputError) as caught:  # the files are named by path now, not changed
        expand(folder, "flips", out, ExpandOptions(split_by="path", **QUIET))
    assert "(split_by content, now path)" in str(caught.value) and "source files" not in str(caught.value)
    m = expand(folder, "rotations", out, ExpandOptions(overwrite=True, **QUIET))
    assert m["recipe"]["name"] == "rotations"
    assert {p.name for p in out.glob("*.parquet")} == {s["name"] for s in m["shards"]}


def test_a_folder_that_is_not_augpipe_output_is_never_written_into(folder, tmp_path):
    from augpipe.errors import OutputError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not empty"):
        expand(folder, "flips", out, ExpandOptions(overwrite=True, **QUIET))
    assert (out / "thesis.tex").read_text() == "precious"


def test_resume_after_sigkill_gives_the_same_output_as_an_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data", per_class=300, size=128)
    reference = tmp_path / "reference"
    subprocess.run(_expand_cmd(data, reference), check=True, capture_output=True)
    expected = shard_hashes(reference)
    assert len(expected) > 8
    out = tmp_path / "out"
    rng = random.Random()
    for attempt in range(2):
        before = len(list(out.glob("*.parquet")))
        proc = subprocess.Popen(_expand_cmd(data, out), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.parquet"))) <= before and time.monotonic() < deadline:
            time.sleep(0.01)  # wait for this attempt's first new shard: the kill lands mid-run
        time.sleep(rng.uniform(0, 0.1))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if attempt == 0:
            assert not (out / "_augpipe.json").exists(), "the run finished before it was killed"
        for shard in out.glob("*.parquet"):  # whatever is under a final name is complete
            pq.read_metadata(shard)
    done = subprocess.run(_expand_cmd(data, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert shard_hashes(out) == expected
    assert json.loads((out / "_augpipe.json").read_text())["shards"] == \
        json.loads((reference / "_augpipe.json").read_text())["shards"]


def test_a_finished_shard_whose_size_disagrees_with_its_record_is_redone(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    out = tmp_path / "out"
    options = ExpandOptions(workers=1, shard_size=30_000, progress=False)
    expand(data, "flips", out, options)
    expected = shard_hashes(out)
    # what a crash leaves: finished shards with records, one of them torn, and no manifest
    manifest = as_if_killed(out)
    torn = out / manifest["shards"][0]["name"]
    torn.write_bytes(torn.read_bytes()[:100])
    done = expand(data, "flips", out, options)
    assert shard_hashes(out) == expected
    assert done["timing"]["shards_resumed"] == len(expected) - 1


@pytest.mark.parametrize("damage", ["[1, 2]", '{"shards": "all"}'])
def test_a_damaged_manifest_is_no_finished_output_and_a_rerun_writes_a_whole_one(tmp_path, damage):
    source = make_folder(tmp_path / "src", per_class=3)
    out = tmp_path / "out"
    first = expand(source, "flips", out, ExpandOptions(workers=1, progress=False))
    (out / "_augpipe.json").write_text(damage)
    again = expand(source, "flips", out, ExpandOptions(workers=1, progress=False))
    assert not again.get("up_to_date") and json.loads((out / "_augpipe.json").read_text())["shards"] == first["shards"]


def test_a_shard_of_a_finished_output_damaged_at_the_same_size_is_redone(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    expected = shard_hashes(out)
    damaged = out / sorted(expected)[0]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    again = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert not again.get("up_to_date") and shard_hashes(out) == expected


def test_a_source_unread_in_a_finished_run_is_read_by_the_next(tmp_path, monkeypatch):
    """A file gone for a moment while the shards were written is a recorded skip; once it is back,
    the same command reads it (it said "nothing to do", the skip kept for good)."""
    import augpipe.pipeline as pipeline

    data = make_folder(tmp_path / "data", per_class=6)
    gone = sorted(data.rglob("*.jpg"))[3]
    kept = gone.read_bytes()
    write_shards = pipeline._write_shards

    def meanwhile_gone(*args):
        gone.unlink()
        return write_shards(*args)

    monkeypatch.setattr(pipeline, "_write_shards", meanwhile_gone)
    first = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert [s["reason"] for s in first["skipped"]] == ["vanished during the run (not found)"]
    monkeypatch.setattr(pipeline, "_write_shards", write_shards)
    gone.write_bytes(kept)
    again = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert not again.get("up_to_date") and again["skipped"] == []
    expand(data, "flips", tmp_path / "clean", ExpandOptions(**QUIET))
    assert shard_hashes(tmp_path / "out") == shard_hashes(tmp_path / "clean")
    assert expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET)).get("up_to_date")


def test_an_unfinished_output_is_said_to_be_one(tmp_path, folder, cli):
    """Its shards are part of a dataset: inspect read it as a source ('no images found'), export
    and the readers said only that it had no manifest."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    as_if_killed(out)
    for args in (("inspect", out), ("inspect", out, "--verify"), ("export", out, "-f", "imagefolder", "-o", tmp_path / "x")):
        result = cli(*args)
        assert result.exit_code == 2 and f"{out} is an augpipe expand that has not finished" in result.output, args
        assert "run the same expand command again to finish it" in result.output


def test_a_folder_of_shards_whose_manifest_was_deleted_is_said_to_be_one_and_kept(tmp_path, folder, cli):
    """A new user's: inspect read it as a source folder, expand said it 'holds no augpipe output'."""
    from augpipe.errors import SourceError
    from augpipe.readers import ShardDataset

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    (out / "_augpipe.json").unlink()
    before = shard_hashes(out)
    names = sorted(before)
    said = f"{out} holds augpipe shards ({', '.join(names[:2])}{', ...' if len(names) > 2 else ''}) but no _augpipe.json"
    for args in (("inspect", out), ("inspect", out, "--verify"), ("export", out, "-f", "imagefolder", "-o", tmp_path / "x"),
                 ("preview", out, "-o", tmp_path / "sheet.png"), ("preview", out, "-r", "flips", "-o", tmp_path / "s.png")):
        result = cli(*args)
        assert result.exit_code == 2 and said in result.output and "put it back" in result.output, args
    with pytest.raises(SourceError, match="but no _augpipe.json"):
        ShardDataset(out)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"holds augpipe shards \(.*\) but no _augpipe.json: augpipe cannot tell "
                                              "which run wrote them, so it replaces none"):
            expand(folder, "flips", out, ExpandOptions(overwrite=overwrite, **QUIET))
    assert shard_hashes(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(augpipe(*args), capture_output=True, text=True, env=ENV, stdin=subprocess.DEVNULL)


def test_verify_prints_the_command_that_mends_and_it_does(tmp_path):
    """A new user's: 'every argument as before' left out the --shard-size they had given, and the
    rerun was refused as another run's (or, with --overwrite, would have sharded it anew)."""
    import shlex

    data, out = make_folder(tmp_path / "data", per_class=12), tmp_path / "out"
    given = ["--copies", "3", "--shard-size", "20KB", "--seed", "7", "--val-fraction", "0.2"]
    assert _cli("expand", data, "-r", "flips", "--out", out, *given, "-q").returncode == 0
    expected = shard_hashes(out)
    _damage(out / sorted(expected)[1])
    told = _verify(out)
    command = next(line for line in told.stdout.splitlines() if line.startswith("  mend      ")).split(": ", 1)[1]
    assert command == (f"augpipe expand {data} --recipe flips --out {out} --seed 7 --copies 3 --val-fraction 0.2 "
                       "--shard-size 20000 --format imagefolder")
    again = _cli(*shlex.split(command)[1:], "-q")
    assert again.returncode == 0 and "mended      a shard of this output was damaged" in again.stdout
    assert shard_hashes(out) == expected and _verify(out).returncode == 0
    refused = _cli("expand", data, "-r", "flips", "--out", out, *given[:2], "--seed", "7", "--val-fraction", "0.2", "-q")
    assert refused.returncode == 2 and refused.stderr.strip().endswith(
        "or, to resume or mend it, give the options it was made with: --shard-size 20000"), refused.stderr
    # a new user's: "made with another seed" named neither seed, where an option's refusal names both
    refused = _cli("expand", data, "-r", "flips", "--out", out, *given[:4], "--seed", "3", "--val-fraction", "0.2", "-q")
    assert refused.returncode == 2 and "made with another seed (7, now 3)" in refused.stderr and \
        refused.stderr.strip().endswith("give the seed it was made with: --seed 7"), refused.stderr
    refused = _cli("expand", data, "-r", "flips", "--out", out, *given[:4], "--seed", "3", "-q")
    assert refused.returncode == 2 and refused.stderr.strip().endswith(
        "give the seed and options it was made with: --seed 7 --val-fraction 0.2"), refused.stderr


def test_the_mend_names_a_recipe_file_gone_since_and_where_its_text_is(tmp_path):
    data, out, recipe = make_folder(tmp_path / "data", per_class=6), tmp_path / "out", tmp_path / "mine.yaml"
    shutil.copy(Path(__file__).parents[1] / "augpipe" / "recipes" / "flips.yaml", recipe)
    expand(data, str(recipe), out, ExpandOptions(**QUIET))
    _damage(next(out.glob("train-*.parquet")))
    assert f"--recipe {recipe} --out {out}" in _verify(out).stdout
    recipe.write_text(recipe.read_text() + "# edited\n")
    # the library's default shard size is 256 MiB, the command line's 256 MB: named, it gives the same shards
    assert (f"--recipe RECIPE.yaml --out {out} --copies 2 --shard-size {256 * 2**20} --format imagefolder (the recipe "
            f"file {recipe} is gone or "
            "changed since: write this manifest's recipe.text to a file and give that as --recipe)") in _verify(out).stdout


@pytest.mark.parametrize("leftover", [".augpipe.lock", ".augpipe", "_augpipe_skipped.jsonl"])
def test_shards_without_a_manifest_are_replaced_by_no_run_whatever_augpipe_file_is_left(tmp_path, folder, leftover):
    """A hostile tester's: any of augpipe's own names beside them let a run of other options write
    its shards among them (a lock file, a work folder, a skipped list prove nothing)."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    (out / "_augpipe.json").unlink()
    (out / leftover).mkdir() if leftover == ".augpipe" else (out / leftover).write_text("")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="but no _augpipe.json: augpipe cannot tell which run wrote them"):
            expand(folder, "flips", out, ExpandOptions(overwrite=overwrite, shard_size=30_000, seed=5, **QUIET))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_shards_beside_a_manifest_that_does_not_read_are_replaced_only_by_the_same_names(tmp_path, folder):
    """A run that would write other names would leave its shards beside them (a hostile tester's
    'mixed' folder); the same run writes over each of them, whole (as before)."""
    out = tmp_path / "out"
    first = expand(folder, "flips", out, ExpandOptions(**QUIET))
    (out / "_augpipe.json").write_text("{")
    before = shard_hashes(out)
    with pytest.raises(OutputError, match=r"holds augpipe shards \(train-00000-of-00001.parquet.*\) this run would "
                                          "not write, and its _augpipe.json does not read"):
        expand(folder, "flips", out, ExpandOptions(shard_size=30_000, overwrite=True, **QUIET))
    assert shard_hashes(out) == before
    again = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert again["shards"] == first["shards"] and shard_hashes(out) == before


def test_the_records_of_a_run_whose_record_does_not_read_are_kept_for_no_run(tmp_path):
    """A hostile tester's: a killed run's record damaged, another seed's run kept its finished
    shards as its own, and --verify found nothing wrong."""
    data, out = make_folder(tmp_path / "data", per_class=40), tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(seed=1, **SHARDED))
    as_if_killed(out)
    (out / ".augpipe" / "run.json").write_text('{"identity": ')
    done = expand(data, "flips", out, ExpandOptions(seed=2, **SHARDED))
    assert done["timing"]["shards_resumed"] == 0
    clean = tmp_path / "clean"
    expand(data, "flips", clean, ExpandOptions(seed=2, **SHARDED))
    assert shard_hashes(out) == shard_hashes(clean)


@pytest.mark.parametrize("manifest", ["{}", "[]", '{"identity": 5}'])
def test_a_manifest_that_lists_no_shards_claims_none(tmp_path, folder, manifest):
    """JSON that is no manifest let a run of another shard size write beside the shards (a
    hostile tester's), and an identity that is no object crashed expand."""
    out = tmp_path / "out"
    first = expand(folder, "flips", out, ExpandOptions(shard_size=30_000, **QUIET))
    (out / "_augpipe.json").write_text(manifest)
    before = shard_hashes(out)
    with pytest.raises(OutputError, match="this run would not write, and its _augpipe.json does not read"):
        expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert shard_hashes(out) == before
    assert expand(folder, "flips", out, ExpandOptions(shard_size=30_000, **QUIET))["shards"] == first["shards"]


def test_a_refusal_for_options_names_a_switch_the_output_was_made_without(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(shard_size=30_000, **QUIET))
    with pytest.raises(OutputError) as refused:
        expand(folder, "flips", out, ExpandOptions(balance=True, **QUIET))
    assert str(refused.value).endswith("give the options it was made with: --shard-size 30000 and without --balance")


def test_the_mend_names_a_recipe_given_by_a_relative_path_from_any_folder(tmp_path, folder, monkeypatch):
    out = tmp_path / "out"
    shutil.copy(Path(__file__).parents[1] / "augpipe" / "recipes" / "flips.yaml", tmp_path / "my recipe.yaml")
    monkeypatch.chdir(tmp_path)
    expand(folder, "my recipe.yaml", out, ExpandOptions(**QUIET))
    _damage(next(out.glob("train-*.parquet")))
    monkeypatch.chdir(folder)
    assert f"--recipe '{tmp_path / 'my recipe.yaml'}' --out {out}" in _verify(out).stdout
