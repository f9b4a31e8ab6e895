"""What a new user and a hostile tester broke, each as a regression test (issue 8)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import OutputError, RunLockedError, SourceError
from conftest import as_if_killed, make_folder, shard_hashes, write_image

QUIET = dict(progress=False, workers=1)
ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def augpipe(*args, **kwargs) -> list[str]:
    return [sys.executable, "-m", "augpipe", *map(str, args)]


def session_processes(sid: int) -> list[int]:
    """Every live process of a session (the run's, started with start_new_session)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def wait_for_shards(out: Path, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not list(out.glob("*.parquet")) and time.monotonic() < end:
        time.sleep(0.02)
    assert list(out.glob("*.parquet")), "no shard appeared"


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("big") / "data", per_class=250, size=96)


# ---------------------------------------------------------------- 1. the demo

def test_demo_refuses_a_folder_it_did_not_make(tmp_path, cli):
    proj = tmp_path / "proj"
    make_folder(proj / "data", per_class=3)
    before = sorted(p.relative_to(proj) for p in proj.rglob("*"))
    result = cli("demo", proj, "-q", "-w", "1")
    assert result.exit_code == 2 and "not made by augpipe demo" in result.output
    assert sorted(p.relative_to(proj) for p in proj.rglob("*")) == before


# ---------------------------------------------------------------- 2. processes and ownership

@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_workers_die_with_the_command(tmp_path, big, how):
    out = tmp_path / "out"
    proc = subprocess.Popen(augpipe("expand", big, "-r", "classic", "-k", "4", "--shard-size", "100KB", "-o", out,
                                    "-w", "2", "-q"), start_new_session=True, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_shards(out)
    assert len(session_processes(proc.pid)) >= 3  # the command and its two workers
    os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=30)
    time.sleep(2)
    assert session_processes(proc.pid) == []
    if how == "SIGTERM":  # cleaned up on its way out: one line, the lock given back
        assert proc.returncode == 143
        assert proc.stderr.read().decode().strip().startswith("augpipe: error: terminated")
        assert not (out / ".augpipe.lock").exists()


def test_library_workers_die_with_their_parent(tmp_path, big):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        from augpipe import ExpandOptions, expand
        if __name__ == "__main__":
            expand({str(big)!r}, "classic", {str(out)!r},
                   ExpandOptions(copies=4, workers=2, shard_size=100_000, progress=False))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_shards(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2)
    assert session_processes(proc.pid) == []


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


def test_a_shard_is_not_published_once_another_run_owns_the_folder(tmp_path, folder):
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard

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


# ---------------------------------------------------------------- 3. sources changed in place

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


def test_a_kept_shard_damaged_at_the_same_size_is_redone_on_resume(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    out = tmp_path / "out"
    options = ExpandOptions(workers=1, shard_size=30_000, progress=False)
    expand(data, "flips", out, options)
    expected = shard_hashes(out)
    manifest = as_if_killed(out)
    damaged = out / manifest["shards"][1]["name"]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    done = expand(data, "flips", out, options)
    assert shard_hashes(out) == expected
    assert done["timing"]["shards_resumed"] == len(expected) - 1


def test_verify_with_source_finds_a_changed_source(tmp_path, folder, cli):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert cli("inspect", out, "--verify", "--source", folder).exit_code == 0
    write_image(folder / "dog" / "dog_004.jpg", seed=77)
    result = cli("inspect", out, "--verify", "--source", folder)
    assert result.exit_code == 1 and "source dog/dog_004.jpg: changed since it was expanded" in result.output


# ---------------------------------------------------------------- 4. duplicates and splits

def duplicated_folder(root: Path) -> Path:
    make_folder(root, per_class=12)
    for i in range(20):  # one image under twenty names
        shutil.copy(root / "cat" / "cat_000.jpg", root / "cat" / f"copy_{i:02d}.jpg")
    return root


def test_identical_files_always_share_a_split(tmp_path):
    data = duplicated_folder(tmp_path / "data")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0.5, **QUIET))
    table = pq.read_table(tmp_path / "out", columns=["source", "source_sha256", "split"]).to_pylist()
    splits_of = {}
    for r in table:
        splits_of.setdefault(r["source_sha256"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert m["counts"]["validation"]["sources"] > 0


def test_split_by_path_leaks_and_verify_and_train_say_so(tmp_path, cli):
    data = duplicated_folder(tmp_path / "data")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0.5, split_by="path", **QUIET))
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "leakage: identical source content in train and validation" in result.output


def test_inspect_source_lists_duplicates_and_look_alikes(tmp_path, cli):
    import cv2

    data = duplicated_folder(tmp_path / "data")
    image = cv2.imread(str(data / "dog" / "dog_005.jpg"))
    cv2.imwrite(str(data / "dog" / "dog_005_again.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    result = cli("inspect", data, "--json")
    facts = json.loads(result.output)
    assert len(facts["duplicates"]) == 1 and len(facts["duplicates"][0]) == 21
    assert ["dog/dog_005.jpg", "dog/dog_005_again.jpg"] in facts["near_duplicates"]


# ---------------------------------------------------------------- 8. only what augpipe wrote

def test_overwrite_deletes_only_what_augpipe_wrote(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    alice = out / "train-curated-of-alice.parquet"
    shutil.copy(next(out.glob("train-0*.parquet")), alice)
    (out / "notes.txt").write_text("mine")
    expand(folder, "classic", out, ExpandOptions(overwrite=True, **QUIET))
    assert alice.is_file() and (out / "notes.txt").read_text() == "mine"


def test_preview_html_refuses_a_folder_it_did_not_write(tmp_path, folder, cli):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my page</html>")
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path / "s.png", "--html", site)
    assert result.exit_code == 2 and "not a gallery augpipe wrote" in result.output
    assert (site / "index.html").read_text() == "<html>my page</html>"
    gallery = tmp_path / "gallery"
    for _ in range(2):  # a gallery of ours is written again
        assert cli("preview", folder, "-r", "flips", "-o", tmp_path / "s.png", "--html", gallery).exit_code == 0


# ---------------------------------------------------------------- 9. split folders

def test_a_class_named_train_is_ambiguous_and_refused(tmp_path, cli):
    data = make_folder(tmp_path / "vehicles", classes=("bus", "car", "train"), per_class=4)
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1")
    assert result.exit_code == 2 and "--layout" in result.output and "train" in result.output
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(layout="classes", **QUIET))
    assert m["classes"] == ["bus", "car", "train"]


@pytest.mark.parametrize("names", [("Train", "Test"), ("train", "valid"), ("TRAIN", "Val", "test")])
def test_split_folders_match_case_insensitively(tmp_path, names):
    for name in names:
        make_folder(tmp_path / "data" / name, per_class=3)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert m["classes"] == ["cat", "dog"]
    expected = {"train": "train", "test": "test", "valid": "validation", "val": "validation"}
    assert set(m["counts"]) == {expected[n.lower()] for n in names}


# ---------------------------------------------------------------- 12. a FIFO swapped in

def test_a_fifo_swapped_in_after_the_scan_is_skipped_not_waited_on(tmp_path, folder):
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from augpipe.formats import scan
    from augpipe.jobs import RunSpec, write_shard

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


# ---------------------------------------------------------------- 14. names that are not UTF-8

def test_a_name_that_is_not_utf8_is_skipped_and_recorded(tmp_path, folder, cli):
    bad = os.path.join(os.fsencode(folder / "cat"), b"caf\xe9.jpg")
    shutil.copy(folder / "cat" / "cat_000.jpg", bad)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert {"path": "cat/caf\\xe9.jpg", "reason": "file name is not valid UTF-8: rename it"} in m["skipped"]
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- 15. one line, not a traceback

def test_preview_and_inspect_on_damaged_datasets_say_one_line(tmp_path, folder, cli):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    manifest = json.loads((out / "_augpipe.json").read_text())
    for broken in ({k: v for k, v in manifest.items() if k != "shards"}, [1, 2, 3]):
        (out / "_augpipe.json").write_text(json.dumps(broken))
        for command in (("inspect", out), ("preview", out, "-o", tmp_path / "p.png")):
            result = cli(*command)
            assert result.exit_code == 2 and result.output.startswith("augpipe: error:"), result.output
            assert "Traceback" not in result.output and "unexpected" not in result.output
    (out / "_augpipe.json").write_text(json.dumps(manifest))
    shard = out / manifest["shards"][0]["name"]
    shard.write_bytes(shard.read_bytes()[:-100])
    result = cli("preview", out, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "cannot be read" in result.output


def test_preview_draws_a_row_whose_image_does_not_decode(tmp_path, folder, cli):
    import pyarrow as pa

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    images = table.column("image").combine_chunks()
    broken = pa.StructArray.from_arrays([pa.array([b"junk"] * len(table)), images.field("path")],
                                        fields=list(images.type))
    pq.write_table(table.set_column(0, "image", broken), shard)
    result = cli("preview", out, "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output


def test_preview_of_a_source_with_a_crop_larger_than_every_image_says_one_line(tmp_path, folder, cli):
    recipe = tmp_path / "big-crop.yaml"
    recipe.write_text("transforms: [{RandomCrop: {height: 200, width: 200, p: 1}}]\n")
    result = cli("preview", folder, "-r", recipe, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "too small for the recipe" in result.output, result.output


def test_every_input_bad_is_exit_2_with_the_reasons(tmp_path, cli):
    data = tmp_path / "data"
    for i in range(3):
        (data / "cat").mkdir(parents=True, exist_ok=True)
        (data / "cat" / f"{i}.jpg").write_bytes(b"not an image")
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1")
    assert result.exit_code == 2 and "every input" in result.output and "not a readable image" in result.output
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


# ---------------------------------------------------------------- 16. the README's library example

def test_the_library_entry_points_are_the_functions(tmp_path, folder):
    from augpipe import ExpandOptions as Options, expand as run

    assert callable(run) and not isinstance(run, type(sys))
    m = run(folder, "flips", tmp_path / "out", Options(**QUIET))
    assert m["counts"]["train"]["rows"] > 0


# ---------------------------------------------------------------- 18. messages

def test_usage_errors_are_one_line(tmp_path, folder):
    for args in (["--copies", "-1"], ["--shard-size", "0"], ["--workers", "0"]):
        done = subprocess.run(augpipe("expand", folder, "-r", "flips", *args), env=ENV, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("augpipe: error: ") and "{" not in lines[0], done.stderr


def test_a_full_disk_names_the_file_and_says_a_rerun_resumes(tmp_path, folder):
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    make_folder(folder, per_class=30, size=96)
    done = subprocess.run(augpipe("expand", folder, "-r", "classic", "-o", tmp_path / "out", "-w", "1", "-q"),
                          env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "run the same command again" in lines[0]
    assert "train-" in lines[0]


def test_three_ctrl_cs_print_one_line(tmp_path, big):
    out = tmp_path / "out"
    proc = subprocess.Popen(augpipe("expand", big, "-r", "classic", "-k", "4", "--shard-size", "100KB", "-o", out,
                                    "-w", "2", "-q"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    wait_for_shards(out)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        time.sleep(0.05)
    proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "augpipe: error: interrupted: finished shards are kept; run the same command again to resume"], err
    time.sleep(1)
    assert session_processes(proc.pid) == []


def test_expand_dot_puts_the_output_beside_the_folder(tmp_path, folder):
    done = subprocess.run(augpipe("expand", ".", "-r", "flips", "-w", "1", "-q"), cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder.parent / "data-expanded" / "_augpipe.json").is_file()


def test_out_at_a_dangling_symlink_and_a_recipe_folder_say_what_they_are(tmp_path, folder, cli):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    result = cli("expand", folder, "-r", "flips", "-o", link, "-q", "-w", "1")
    assert result.exit_code == 2 and "broken symlink" in result.output
    (tmp_path / "recipes-dir").mkdir()
    result = cli("expand", folder, "-r", tmp_path / "recipes-dir", "-q", "-w", "1")
    assert result.exit_code == 2 and "is a folder" in result.output
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.output


def test_no_decoder_warning_reaches_stderr(tmp_path, folder):
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    (folder / "cat" / "half.png").write_bytes(png[: len(png) // 2])
    done = subprocess.run(augpipe("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-w", "2", "-q"),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_leftovers_of_a_run_killed_after_its_manifest_are_cleaned(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    (out / ".augpipe" / "tmp").mkdir(parents=True)
    (out / "._augpipe.json.4242.tmp").write_text("{")
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert m.get("up_to_date")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------- the output folder as a dataset

def test_the_output_folder_reads_as_one_table_with_a_split_column(tmp_path, folder):
    import datasets
    import duckdb
    import pandas as pd
    import polars as pl

    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    total = sum(c["rows"] for c in m["counts"].values())
    df = pd.read_parquet(out)
    assert len(df) == total and set(df["split"]) == {"train", "validation"}
    assert pq.read_table(out).num_rows == total
    assert pl.read_parquet(out / "*.parquet").height == total
    counts = dict(duckdb.connect().execute(f"select split, count(*) from '{out}/*.parquet' group by split").fetchall())
    assert counts == {s: c["rows"] for s, c in m["counts"].items()}
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == {s: c["rows"] for s, c in m["counts"].items()}
    assert ds["train"].features["label"].names == ["cat", "dog"]
    assert set(ds["validation"]["split"]) == {"validation"}


# ---------------------------------------------------------------- 5. failures in the recipe

def test_a_copy_that_fails_keeps_its_original_and_is_listed(folder, tmp_path, monkeypatch):
    import augpipe.sample as sample

    real = sample.apply_recipe
    unlucky = "cat/cat_003.jpg"

    def flaky(rgb, recipe, seed, kind=None, target=None):
        if seed == sample.sample_seed(0, unlucky, 1):
            raise ValueError("this one image defeats the transform")
        return real(rgb, recipe, seed, kind, target)

    monkeypatch.setattr(sample, "apply_recipe", flaky)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    rows = pq.read_table(tmp_path / "out", columns=["source", "copy"]).to_pylist()
    assert sorted(r["copy"] for r in rows if r["source"] == unlucky) == [0, 2]  # the original kept
    assert m["failed_copies"] == [{"path": unlucky, "copy": 1,
                                   "reason": "augmentation failed: ValueError: this one image defeats the transform"}]


def test_the_same_failure_on_many_images_stops_the_run(folder, tmp_path, monkeypatch):
    import augpipe.sample as sample
    from augpipe.pipeline import AugmentationError

    real = sample.apply_recipe

    def broken(rgb, recipe, seed, kind=None, target=None):
        if seed < 100:  # the dry run's seeds: it passes, as a recipe that fails only on real images would
            return real(rgb, recipe, seed, kind, target)
        raise RuntimeError("needs something this dataset lacks")

    monkeypatch.setattr(sample, "apply_recipe", broken)
    with pytest.raises(AugmentationError, match="the recipe fails on .* images so far: augmentation failed: "
                                                "RuntimeError: needs something this dataset lacks"):
        expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, shard_size=10_000, **QUIET))
    assert not (tmp_path / "out" / "_augpipe.json").exists()


# ---------------------------------------------------------------- 7. flat copies

def test_verify_flags_an_augmented_copy_of_one_flat_colour(folder, tmp_path, cli):
    import cv2
    import numpy as np
    import pyarrow as pa

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(i for i, r in enumerate(rows) if r["copy"] == 1)
    rows[k]["image"]["bytes"] = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "copy 1 is a single flat colour" in result.output


# ---------------------------------------------------------------- 4. train refuses shared content

def test_train_refuses_identical_content_in_training_and_validation(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from augpipe.options import TrainOptions
    from augpipe.training.run import train

    data = duplicated_folder(tmp_path / "data")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0.5, split_by="path", **QUIET))
    with pytest.raises(SourceError, match="identical copies in training"):
        train(out, tmp_path / "run", TrainOptions(epochs=1, progress=False, log=lambda line: None))


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


def test_identical_images_in_two_split_folders_are_a_warning(tmp_path, cli):
    data = tmp_path / "data"
    make_folder(data / "train", per_class=4)
    make_folder(data / "val", per_class=2, size=40)  # other images than train's
    shutil.copy(data / "train" / "cat" / "cat_003.jpg", data / "val" / "cat" / "dup.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert any("in more than one split folder (e.g. train/cat/cat_003.jpg = val/cat/dup.jpg)" in w
               for w in m["warnings"])
    facts = json.loads(cli("inspect", data, "--json").output)
    assert facts["duplicates_across_split_folders"] == [["train/cat/cat_003.jpg", "val/cat/dup.jpg"]]
    assert "across split folders" in cli("inspect", data).output


# ---------------------------------------------------------------- preview --out

def test_preview_out_overwrites_only_a_sheet_it_wrote(tmp_path, cli):
    data = make_folder(tmp_path / "pv", per_class=3)
    source = data / "cat" / "cat_000.jpg"
    before = source.read_bytes()
    result = cli("preview", data, "-r", "flips", "--rows", "2", "--out", source)
    assert result.exit_code == 2 and f"--out {source} exists and is not a contact sheet augpipe wrote" in result.output
    assert source.read_bytes() == before
    for name in ("s.png", "s.jpg", "s.webp"):
        for _ in range(2):  # a new file, then the sheet written before
            result = cli("preview", data, "-r", "flips", "--rows", "2", "-k", "1", "--out", tmp_path / name)
            assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pv", "s.jpg", "s.png", "s.webp"]  # no temporary left


# ---------------------------------------------------------------- second hostile round

@pytest.mark.parametrize("uri", ["s3://", "s3:///", "s3://?region=x"])
def test_an_object_store_uri_without_a_bucket_is_one_line(uri):
    from augpipe.errors import StoreError
    from augpipe.store import open_store

    with pytest.raises(StoreError, match="no bucket or path after s3://"):
        open_store(uri)


def test_gs_without_credentials_is_refused_instead_of_waiting_for_a_metadata_server(tmp_path, monkeypatch):
    from augpipe import store
    from augpipe.errors import StoreError

    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setattr(store, "_on_google_cloud", lambda: False)
    with pytest.raises(StoreError, match="no Google credentials"):
        store.open_store("gs://some-bucket/photos")
    assert store._google_credentials("gs://some-bucket/photos?anonymous=true")
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert store._google_credentials("gs://some-bucket/photos")


def test_dead_runs_temp_folders_are_swept_and_nothing_else(tmp_path, monkeypatch):
    import tempfile

    from augpipe import store

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f"augpipe-{dead}").mkdir()
    (tmp_path / f"augpipe-{dead}" / "train-00000-of-00001.parquet").write_bytes(b"x")
    mine = tmp_path / f"augpipe-{os.getppid()}"  # a live process's
    other = tmp_path / "augpipe-notes"  # not ours by name
    mine.mkdir()
    other.mkdir()
    folder = store.ArrowStore.temp_dir(None, "work")
    assert folder == tmp_path / f"augpipe-{os.getpid()}" and folder.is_dir()
    assert not (tmp_path / f"augpipe-{dead}").exists() and mine.is_dir() and other.is_dir()


def test_a_manifest_nested_beyond_reason_is_no_manifest(tmp_path):
    from augpipe.manifest import MANIFEST, read_manifest
    from augpipe.store import open_store

    (tmp_path / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    assert read_manifest(open_store(tmp_path)) is None
