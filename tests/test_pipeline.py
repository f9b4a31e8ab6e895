"""`expand` end to end (augpipe/pipeline.py): determinism across workers and seeds, bad inputs, strict
mode, and failures that stop a run."""

from __future__ import annotations

import json
import os
import signal
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import OutputError
from conftest import ENV, augpipe, make_folder, run, shard_hashes, write_image

QUIET = dict(progress=False, workers=1)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image: decoding it would need width*height*3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def add_bad_inputs(data: Path) -> dict[str, str]:
    good = write_image(data / "cat" / "good.jpg", size=96).read_bytes()
    (data / "cat" / "empty.jpg").write_bytes(b"")
    (data / "cat" / "truncated.jpg").write_bytes(good[: len(good) * 2 // 3])
    (data / "cat" / "text.jpg").write_text("this is not an image")
    (data / "cat" / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    (data / "dog" / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (data / "dog" / "dangling.jpg").symlink_to(data / "nowhere.jpg")
    return {
        "cat/empty.jpg": "empty file",
        "cat/truncated.jpg": "corrupt or truncated",
        "cat/text.jpg": "not a readable image",
        "cat/anim.gif": "unsupported file type '.gif'",
        "dog/bomb.png": "too large: 100000×100000",
        "dog/dangling.jpg": "broken symlink",
    }


def test_every_input_bad_is_exit_2_with_the_reasons(tmp_path, cli):
    data = tmp_path / "data"
    for i in range(3):
        (data / "cat").mkdir(parents=True, exist_ok=True)
        (data / "cat" / f"{i}.jpg").write_bytes(b"not an image")
    result = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1")
    assert result.exit_code == 2 and "every input" in result.output and "not a readable image" in result.output
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_the_library_entry_points_are_the_functions(tmp_path, folder):
    from augpipe import ExpandOptions as Options
    from augpipe import expand as run

    assert callable(run) and not isinstance(run, type(sys))
    m = run(folder, "flips", tmp_path / "out", Options(**QUIET))
    assert m["counts"]["train"]["rows"] > 0


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


def test_the_same_failure_on_many_images_stops_the_run(folder, tmp_path, monkeypatch):
    import augpipe.sample as sample
    from augpipe.pipeline import AugmentationError

    real = sample.augment_copy

    def broken(rgb, recipe, seed, kind=None, target=None, donors=()):
        if seed < 100:  # the dry run's seeds: it passes, as a recipe that fails only on real images would
            return real(rgb, recipe, seed, kind, target, donors)
        raise RuntimeError("needs something this dataset lacks")

    monkeypatch.setattr(sample, "augment_copy", broken)
    with pytest.raises(AugmentationError, match="the recipe fails on .* images so far: augmentation failed: "
                                                "RuntimeError: needs something this dataset lacks"):
        expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, shard_size=10_000, **QUIET))
    assert not (tmp_path / "out" / "_augpipe.json").exists()


def test_identical_images_in_two_split_folders_are_a_warning(tmp_path, cli):
    data = tmp_path / "data"
    make_folder(data / "train", per_class=4)
    make_folder(data / "val", per_class=2, size=40)  # other images than train's
    shutil.copy(data / "train" / "cat" / "cat_003.jpg", data / "val" / "cat" / "dup.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert any("in more than one split folder (e.g. train/cat/cat_003.jpg = val/cat/dup.jpg)" in w
               for w in m["warnings"])
    facts = json.loads(cli("inspect", data, "--json", "-q").output)
    leaks = {(p["path"], *p["related"]) for p in facts["problems"] if p["check"] == "exact_leak"}
    assert leaks == {("train/cat/cat_003.jpg", "val/cat/dup.jpg")}  # a pair once
    assert "exact duplicates across splits: 1" in cli("inspect", data, "-q").output


@pytest.mark.parametrize("fmt", ["coco", "masks"])
def test_byte_identical_across_worker_counts_with_boxes_and_masks(scenes, tmp_path, fmt):
    one, two = tmp_path / "one", tmp_path / "two"
    expand(scenes[fmt], "classic", one, ExpandOptions(workers=1, shard_size=20_000, progress=False))
    expand(scenes[fmt], "classic", two, ExpandOptions(workers=2, shard_size=20_000, progress=False))
    assert len(shard_hashes(one)) > 2 and shard_hashes(one) == shard_hashes(two)


def test_same_inputs_give_byte_identical_shards_whatever_the_worker_count(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    one, four = tmp_path / "one", tmp_path / "four"
    # a small shard size makes several shards, so that four workers really share them
    expand(data, "classic", one, ExpandOptions(workers=1, shard_size=30_000, progress=False))
    expand(data, "classic", four, ExpandOptions(workers=4, shard_size=30_000, progress=False))
    assert len(shard_hashes(one)) > 4
    assert shard_hashes(one) == shard_hashes(four)


def test_another_seed_gives_other_augmentations(folder, tmp_path):
    expand(folder, "classic", tmp_path / "a", ExpandOptions(seed=1, **QUIET))
    expand(folder, "classic", tmp_path / "b", ExpandOptions(seed=2, **QUIET))
    assert shard_hashes(tmp_path / "a") != shard_hashes(tmp_path / "b")


def test_each_kind_of_bad_input_is_skipped_and_recorded(folder, tmp_path):
    expected = add_bad_inputs(folder)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    recorded = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(recorded) == set(expected)
    for path, reason in expected.items():
        assert reason in recorded[path], (path, recorded[path])
    assert m["counts"]["train"]["originals"] == 21  # 20 good + good.jpg
    assert json.loads((tmp_path / "out" / "_augpipe.json").read_text())["skipped"] == m["skipped"]


def test_max_pixels_skips_large_images(folder, tmp_path):
    write_image(folder / "cat" / "big.jpg", size=64)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(max_pixels=40 * 40, val_fraction=0, **QUIET))
    assert [s["path"] for s in m["skipped"]] == ["cat/big.jpg"]


def test_copies_overrides_the_recipe(folder, tmp_path):
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(copies=5, val_fraction=0, **QUIET))
    assert m["counts"]["train"]["rows"] == 20 * 6


def test_strict_stops_at_the_first_bad_input(folder, tmp_path):
    from augpipe.errors import StrictSkipError

    (folder / "cat" / "zzz.jpg").write_bytes(b"")
    with pytest.raises(StrictSkipError, match="cat/zzz.jpg: empty file"):
        expand(folder, "flips", tmp_path / "out", ExpandOptions(strict=True, **QUIET))


def test_strict_with_workers_fails_in_one_line_and_leaves_no_process(tmp_path):
    data = make_folder(tmp_path / "data", per_class=60)
    (data / "dog" / "dog_999.jpg").write_bytes(b"not an image")
    cmd = [sys.executable, "-m", "augpipe", "expand", str(data), "-r", "flips", "-o", str(tmp_path / "out"),
           "-w", "2", "--shard-size", "20KB", "--strict", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "augpipe: error: dog/dog_999.jpg: not a readable image (unknown format or corrupt header) "
        "(--strict stops at the first bad input)"]


@pytest.mark.parametrize("source, out", [
    ("s3://src/cls1?region=us-east-1", "s3://src/cls1/out"), ("s3://src/cls1", "s3://src/cls1/out?region=x"),
    ("S3://src/cls1", "s3://src/cls1/out"), ("file://{tmp}/cls", "{tmp}/cls/out"), ("{tmp}/cls", "file://{tmp}/cls/o")])
def test_an_output_inside_its_source_is_refused_however_spelt(source, out, tmp_path):
    from augpipe.pipeline import check_not_nested

    with pytest.raises(OutputError, match="inside the source"):
        check_not_nested(source.format(tmp=tmp_path), out.format(tmp=tmp_path))
    check_not_nested(f"{tmp_path}/cls", f"{tmp_path}/cls-x")
    check_not_nested("s3://src/cls1", "s3://src/cls10")


def test_a_source_that_names_every_split_but_no_validation_is_warned_of(tmp_path):
    """COCO's instances_train.json alone: --val-fraction holds out nothing, and the summary says so."""
    from conftest import make_scenes

    root = make_scenes(tmp_path / "src", n=4)
    (root / "annotations" / "instances_default.json").rename(root / "annotations" / "instances_train.json")
    (root / "default").rename(root / "train")
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(workers=1, progress=False, copies=0, val_fraction=0.5))
    assert list(m["counts"]) == ["train"]
    assert any("none is validation, so there is no validation split" in w for w in m["warnings"]), m["warnings"]
    plain = expand(make_folder(tmp_path / "f", per_class=4), "flips", tmp_path / "out2",
                   ExpandOptions(workers=1, progress=False, copies=0, val_fraction=0.5))
    assert not any("no validation split" in w for w in plain.get("warnings", []))


def test_a_val_fraction_that_holds_out_no_image_is_warned_of(tmp_path):
    """8 images and --val-fraction 0.01: each image's share goes by its content's hash, none of
    these falls under 0.01, and the summary says there is no validation split."""
    src = make_folder(tmp_path / "f", per_class=4)
    m = expand(src, "flips", tmp_path / "out", ExpandOptions(workers=1, progress=False, copies=0, val_fraction=0.01))
    assert list(m["counts"]) == ["train"]
    assert any("--val-fraction 0.01 held out none of the 8 images" in w for w in m["warnings"]), m["warnings"]


@pytest.mark.parametrize("fmt", ["imagefolder", "coco", "masks"])
def test_the_command_hashing_while_it_imports_writes_what_the_pool_hashing_writes(scenes, tmp_path, fmt):
    # the command forks a process that scans and hashes while it loads the recipe; a library
    # caller's pool hashes after the scan: the same splits, skips, identity and bytes
    if fmt == "imagefolder":
        source = make_folder(tmp_path / "data", per_class=30)
        bad = add_bad_inputs(source)
    else:
        source, bad = scenes[fmt], {}
    by_pool, by_command = tmp_path / "pool", tmp_path / "command"
    expand(source, "classic", by_pool, ExpandOptions(workers=2, shard_size=30_000, val_fraction=0.3, progress=False))
    done = run("expand", source, "-r", "classic", "-o", by_command, "-w", "2", "--shard-size", "30000",
               "--val-fraction", "0.3", "-q")
    assert done.returncode == 0, done.stderr
    assert len(shard_hashes(by_pool)) > 2 and shard_hashes(by_pool) == shard_hashes(by_command)
    pool, command = (json.loads((o / "_augpipe.json").read_text()) for o in (by_pool, by_command))
    assert pool["identity"] == command["identity"] and pool["skipped"] == command["skipped"]
    assert {s["path"]: s["reason"] for s in command["skipped"]}.keys() == bad.keys()
    assert pool["warnings"] == command["warnings"]


# What `_hash_early`'s process sends, run as the command runs it: forked from a process of one
# thread (this one has pytest's), `hash_named` wrapped to note the process and to fail on a name.
_EARLY = """
import json, os, sys
from augpipe import ExpandOptions, hashing
from augpipe.engines.local import Forked
from augpipe.pipeline import _scan_and_hash

source, workers, noted, failing = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
hash_named = hashing.hash_named

def wrapped(store, names, *args):
    with open(noted, "a") as f:
        f.write(f"{os.getpid()}\\n")
    if failing in names:
        raise MemoryError(f"no memory for {failing}")
    return hash_named(store, names, *args)

hashing.hash_named = wrapped
early = Forked(_scan_and_hash, source, ExpandOptions(), workers)
try:
    total, progress = early.receive("count"), []
    early.receive("scan", progress.append)
    print(json.dumps([total, progress, early.receive("hashed")]))
except MemoryError as exc:
    print(json.dumps(["error", str(exc)]))
finally:
    early.close()

def parent_of(pid):
    try:  # any process on the machine may end between the listing and the read
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None

print(json.dumps(sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
                        and parent_of(p) == str(os.getpid()))))
"""


def _early_hashes(source: Path, workers: int, noted: Path, failing: str = "") -> tuple[list, list]:
    """(what the process sent, the children left behind)."""
    done = subprocess.run([sys.executable, "-c", _EARLY, str(source), str(workers), str(noted), failing],
                          env={**ENV, **os.environ}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sent, left = (json.loads(line) for line in done.stdout.splitlines())
    return sent, left


def test_sources_in_memory_are_hashed_by_as_many_processes_as_workers(tmp_path):
    # reads that wait on nothing leave the digests, CPU alone: threads would contend for the GIL,
    # so the hashing process forks a helper a worker; the results, in the jobs' order, are one
    # process's, and no helper outlives the pass
    from augpipe.hashing import hash_named
    from augpipe.store import open_store

    source = make_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=300, size=8)  # 4 jobs of 256
    names = sorted(str(p.relative_to(source)) for p in source.rglob("*.jpg"))
    if not open_store(source).in_memory(names):
        pytest.skip("the files just written are not in the page cache here")
    noted = tmp_path / "pids"
    (total, progress, hashed), left = _early_hashes(source, 2, noted)
    assert total == 900 and sum(progress) == 900 and left == []
    assert [tuple(h) for h in hashed] == hash_named(open_store(source), names, 25_000_000)
    assert len(set(noted.read_text().split())) == 2
    noted.unlink()
    (_, _, alone), left = _early_hashes(source, 1, noted)
    assert alone == hashed and len(set(noted.read_text().split())) == 1 and left == []


def test_a_hashing_helpers_error_reaches_the_command(tmp_path):
    from augpipe.store import open_store

    source = make_folder(tmp_path / "data", classes=("a", "b"), per_class=300, size=8)
    if not open_store(source).in_memory(["a/a_000.jpg"]):
        pytest.skip("the files just written are not in the page cache here")
    noted = tmp_path / "pids"
    sent, left = _early_hashes(source, 2, noted, failing="b/b_299.jpg")  # in the last job: the helper's
    assert sent == ["error", "no memory for b/b_299.jpg"] and left == []
    assert len(set(noted.read_text().split())) == 2


def test_the_command_says_a_bad_recipe_before_a_missing_source_and_the_source_before_a_bad_out(tmp_path):
    missing = tmp_path / "nowhere"
    done = run("expand", missing, "-r", tmp_path / "no-recipe.yaml", "-o", tmp_path / "out", "-w", "2", "-q")
    assert done.returncode != 0 and "no-recipe.yaml" in done.stderr and "nowhere" not in done.stderr
    # a source whose scan and hashes outgrow the pipe: the hashing process, blocked on it, is ended
    many = make_folder(tmp_path / "many", per_class=800, size=8)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncopies: 1\ntransforms:\n  - NoSuchTransform: {p: 1}\n")
    done = run("expand", many, "-r", bad, "-o", tmp_path / "out", "-w", "2", "-q", timeout=60)
    assert done.returncode != 0 and "NoSuchTransform" in done.stderr
    done = run("expand", missing, "-r", "classic", "-o", tmp_path / "out", "-w", "2", "-q")
    assert done.returncode != 0 and "source folder not found" in done.stderr
    data = make_folder(tmp_path / "data", per_class=3)
    done = run("expand", data, "-r", "classic", "-o", data / "inside", "-w", "2", "-q")
    assert done.returncode != 0 and "inside the source" in done.stderr


def test_an_image_whose_header_says_it_has_no_pixels_is_skipped_not_a_crash(tmp_path):
    # a PNG that says 0×0 or 5×0 passed the content pass with no size, and the recipe's dry run
    # divided by it (ValueError: cannot convert float NaN to integer) when most images were such
    data = make_folder(tmp_path / "data", per_class=2)
    for k in range(6):
        (data / "cat" / f"none{k}.png").write_bytes(bomb_png(0, 0) if k % 2 else bomb_png(5, 0))
    done = run("expand", data, "-r", "flips", "-o", tmp_path / "out", "-w", "2", "-q")
    assert done.returncode == 0, done.stderr
    skipped = {s["path"]: s["reason"] for s in json.loads((tmp_path / "out" / "_augpipe.json").read_text())["skipped"]}
    assert skipped == {f"cat/none{k}.png": f"no pixels: its header says {'0×0' if k % 2 else '5×0'}" for k in range(6)}
    assert "Warning" not in done.stderr, done.stderr


_HELPERS = """
import os, signal, sys, time
from augpipe.engines import local
from augpipe.engines.local import Forked

stubborn = sys.argv[1] == "stubborn"
local.TERM_GRACE = 2.0 if stubborn else local.TERM_GRACE  # the helpers are killed after 2 s

def helper(send):
    if stubborn:  # a helper that does not end on SIGTERM, and a handler that would wait on it a minute
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)

def hashing(send):
    local.TERM_GRACE = 60.0 if stubborn else local.TERM_GRACE
    helpers = [Forked(helper), Forked(helper)]
    send("helpers", [h._pid for h in helpers])
    time.sleep(60)

hashing_process = Forked(hashing)
helpers = hashing_process.receive("helpers")
time.sleep(0.2 if stubborn else 0)  # the helpers have ignored SIGTERM
started = time.monotonic()
hashing_process.close()
print(hashing_process.status, round(time.monotonic() - started, 2),
      [os.path.exists(f"/proc/{pid}") for pid in helpers])
"""


@pytest.mark.parametrize("helpers", ["plain", "stubborn"])
def test_a_set_up_process_closed_mid_work_reaps_its_helpers_before_it_ends(helpers):
    """Interrupted while the hashing process's helpers run (a Ctrl-C, an error elsewhere), the
    command ends that process, which ends and reaps its helpers first: none is left a zombie for
    the system to reap (a SIGKILL left them so). A helper that does not end on SIGTERM (or one a
    loaded machine has not yet run) is killed for the hashing process to reap, before that
    process's own grace runs out (CI's loaded machine ran past 2 s, and once past 5 s)."""
    done = subprocess.run([sys.executable, "-c", _HELPERS, helpers], env={**ENV, **os.environ},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, seconds, left = done.stdout.split(" ", 2)
    # ended by its SIGTERM handler (128 + 15), which ended and reaped its helpers; not SIGKILLed
    # (-9), which leaves them to the system
    assert status == "143" and left.strip() == "[False, False]", done.stdout


def test_a_close_that_finds_its_child_reaped_already_ends_quietly():
    """A hostile tester's: a close interrupted by a signal whose handler closed the same child
    again (the set-up's SIGTERM handler, expand's `finally`) met ChildProcessError, which took the
    interrupt's place, and the child stayed listed as live."""
    import time

    from augpipe.engines import local

    forked = local.Forked(lambda send: time.sleep(60))
    os.kill(forked._pid, signal.SIGKILL)
    os.waitpid(forked._pid, 0)  # reaped where the interrupted close would have
    forked.close()
    assert forked.status is None and forked not in local._LIVE
    forked.close()  # a second close does nothing


@pytest.mark.parametrize("interrupt", ["a nested close", "KeyboardInterrupt"])
def test_a_close_interrupted_at_any_line_leaves_no_child_listed_and_raises_only_the_interrupt(interrupt):
    """A hostile tester's: a signal handler's close (or a Ctrl-C) landing inside close met a
    ChildProcessError, a TypeError (os.kill(None)), a ValueError (the list entry gone), waited
    10 s for a SIGTERM never sent, or left the child listed live with its pipe open."""
    import time

    from augpipe.engines import local

    names = {"close", "_ended", "_reaped", "terminate"}
    for n in range(1, 200):
        forked, fired = local.Forked(lambda send: time.sleep(60)), []

        def lines(frame, event, arg, forked=forked, fired=fired):
            if event == "line" and not fired and lines.seen + 1 == n:
                fired.append(frame.f_lineno)
                sys.settrace(None)
                frame.f_trace = None
                if interrupt == "KeyboardInterrupt":
                    raise KeyboardInterrupt
                forked.close()
            lines.seen += event == "line" and not fired
            return lines

        lines.seen = 0

        def calls(frame, event, arg):
            return lines if frame.f_code.co_name in names and frame.f_code.co_filename == local.__file__ else None

        started = time.monotonic()
        try:
            try:
                sys.settrace(calls)
                forked.close()
            finally:
                sys.settrace(None)
                forked.close()  # as expand's `finally` does
        except KeyboardInterrupt:
            assert interrupt == "KeyboardInterrupt"
        assert forked not in local._LIVE and forked._recv.closed and forked._pid is None, (n, fired)
        assert time.monotonic() - started < local.TERM_GRACE, (n, fired)  # told, not waited out
        if not fired:
            break
    assert n > 10, n  # every line of close and what it calls was tried


def test_a_file_larger_than_any_image_of_max_pixels_is_skipped_unread(tmp_path, folder, cli):
    """A 3 GB file (sparse: no disk) named .png: skipped as listed, where it was read whole (6 GB
    of memory) to learn it is no image, and a memory limit ended the run."""
    data = tmp_path / "with-a-huge-file"
    shutil.copytree(folder, data)
    huge = next(p for p in sorted(data.iterdir()) if p.is_dir()) / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(3 << 30)
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(progress=False, workers=2))
    rel = huge.relative_to(data).as_posix()
    assert [s["path"] for s in m["skipped"]] == [rel]
    assert m["skipped"][0]["reason"].startswith("too large a file for an image of at most 25,000,000 pixels")
    assert rel in cli("inspect", data, "-q").output


def test_a_class_that_validation_holds_no_image_of_is_warned_of(tmp_path):
    """A new user's: 60 images in 3 classes, the default --val-fraction held out 4, none of one
    class, and nothing said so (the split hashes each image alone; it is not drawn class by class)."""
    from augpipe.plan import is_validation
    from conftest import write_image

    root = make_folder(tmp_path / "src", per_class=12)
    names = [f"rare_{i:03d}.jpg" for i in range(200) if not is_validation(f"rare/rare_{i:03d}.jpg", 0.3)][:3]
    for i, name in enumerate(names):
        write_image(root / "rare" / name, size=32, seed=5000 + i)
    options = dict(workers=1, progress=False, copies=0, val_fraction=0.3, split_by="path")
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(**options))
    assert m["counts"]["validation"]["rows"] > 0
    said = [w for w in m["warnings"] if w.startswith("validation holds no image of")]
    assert said == ["validation holds no image of 1 class (rare): its scores say nothing of it "
                    "(a larger --val-fraction, or a val/ folder that holds each class)"], m["warnings"]
    shutil.rmtree(root / "rare")
    m = expand(root, "flips", tmp_path / "out2", ExpandOptions(**options))
    assert {"cat", "dog"} <= set(m["counts"]["validation"]["by_class"]), m["counts"]
    assert not any(w.startswith("validation holds no image of") for w in m["warnings"])


def test_a_classes_list_without_the_background_is_hinted_at_and_a_mostly_skipped_run_warned_of(tmp_path, cli):
    """A new user's classes.txt without the background: 30 of 40 masks skipped for a value past
    the names, the run exited 0, nothing said how most of the source was lost nor why."""
    from conftest import SCENE_CLASSES, make_scenes

    src = make_scenes(tmp_path / "seg", n=8, fmt="masks")
    (src / "classes.txt").write_text("".join(f"{c}\n" for c in SCENE_CLASSES))  # no background line
    hint = "the first the background (0); a list without it names one class too few"
    inspected = cli("inspect", src)
    assert hint in inspected.output, inspected.output
    result = cli("expand", src, "--recipe", "flips", "--out", tmp_path / "out", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    warnings = json.loads((tmp_path / "out" / "_augpipe.json").read_text())["warnings"]
    skipped = [w for w in warnings if "inputs were skipped" in w]
    assert len(skipped) == 1 and hint in skipped[0] and skipped[0].startswith(tuple(f"{k} of 8 inputs" for k in range(5, 9)))


def test_the_library_says_what_the_command_warns_of_as_python_warnings(tmp_path):
    """A new user's script calling expand() saw none of the warnings the command prints (validation
    held no image of a class); the command's summary says them once."""
    from augpipe import ExpandWarning

    data = make_folder(tmp_path / "data", per_class=2)
    with pytest.warns(ExpandWarning) as caught:
        m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0.5, progress=False, workers=1))
    assert [str(w.message) for w in caught] == m["warnings"] and m["warnings"]
    done = run("expand", data, "-r", "flips", "-o", tmp_path / "cli", "--val-fraction", "0.5", "-w", "1", "-q")
    assert "ExpandWarning" not in done.stderr and done.stdout.count("  warning ") == len(m["warnings"])
