"""loader(..., processes=N): a feed of augpipe's own processes (issue 20): the batches and order of
threads=N, a recipe run there, epochs left early or failing, processes killed, and nothing left
behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from conftest import gone, make_folder, make_scenes

from augpipe import ExpandOptions, expand
from augpipe.readers import ShardDataset, ShardIterable, collate, loader

QUIET = {"workers": 1, "progress": False}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("process-feed")
    expand(make_folder(root / "data", per_class=12, size=48), "flips", root / "out",
           ExpandOptions(copies=1, val_fraction=0, shard_size=20_000, **QUIET))
    return root / "out"


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    root = tmp_path_factory.mktemp("process-feed-coco")
    expand(make_scenes(root / "src", n=10), "flips", root / "out", ExpandOptions(copies=1, val_fraction=0, **QUIET))
    return root / "out"


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def pids(feed) -> list[int]:
    return [worker.process.pid for worker in feed._workers]


@pytest.mark.parametrize("name, kind", [("photos", "dataset"), ("photos", "stream"), ("detection", "dataset"),
                                        ("detection", "stream")])
def test_processes_give_the_batches_and_order_of_threads(name, kind, request):
    """Epoch after epoch (set_epoch), a ShardDataset's seeded order or a stream's shares, with
    `len` agreeing; batches of 5 from 2 processes against 2 threads."""
    out = request.getfixturevalue(name)

    def reader():
        return ShardDataset(out) if kind == "dataset" else ShardIterable(out, shuffle=True, seed=4, buffer_size=7)

    options = {"seed": 3} if kind == "dataset" else {}
    feed, threads = loader(reader(), 5, processes=2, **options), loader(reader(), 5, threads=2, **options)
    try:
        for epoch in (0, 1):
            feed.set_epoch(epoch)
            threads.set_epoch(epoch)
            got, want = list(feed), list(threads)
            assert len(got) == len(want) == len(feed) > 2
            assert all(same(list(g), list(w)) for g, w in zip(got, want))
    finally:
        feed.close()


@pytest.mark.parametrize("start", ["forkserver", "spawn"])
def test_processes_started_by_a_fork_server_or_spawned_give_the_same_batches(photos, start):
    """The reader pickled to them, as to a DataLoader's workers started so."""
    feed = loader(ShardDataset(photos), 6, processes=2, seed=1, multiprocessing_context=start)
    try:
        want = list(loader(ShardDataset(photos), 6, threads=2, seed=1))
        assert same([list(b) for b in feed], [list(b) for b in want])
    finally:
        feed.close()


def test_a_recipe_runs_in_the_processes_as_the_reader_draws_it(photos):
    """A reader's recipe (refused by threads=) runs in each process, seeded by the epoch given
    to the loader: batch k is collate(__getitems__) of the seeded order's k-th indices."""
    ds = ShardDataset(photos, recipe="flips", seed=2)
    feed = loader(ShardDataset(photos, recipe="flips", seed=2), 4, processes=2, seed=1)
    generator = torch.Generator().manual_seed(1)
    try:
        for epoch in (0, 3):
            feed.set_epoch(epoch)
            ds.set_epoch(epoch)
            order = torch.randperm(len(ds), generator=generator).tolist()
            for k, batch in enumerate(feed):
                assert same(list(batch), list(collate(ds.__getitems__(order[4 * k:4 * k + 4]))))
    finally:
        feed.close()


def test_an_epoch_left_early_or_taken_over_leaves_the_next_whole(photos):
    """A loop left after 2 batches, an iterator dropped after 1, and a second iteration started
    while a first is held (the first then ends): each next epoch gives every row once, in the
    processes started first."""
    feed = loader(ShardDataset(photos), 3, processes=2, seed=0, prefetch=1)
    try:
        for k, _ in enumerate(feed):
            if k == 1:
                break
        started = pids(feed)
        next(iter(feed))
        first = iter(feed)
        next(first)
        with pytest.warns(UserWarning, match="called off the epoch a loop still held"):
            second = list(feed)
        assert list(first) == []
        labels = torch.cat([labels for _, labels in second])
        assert len(labels) == len(ShardDataset(photos)) and pids(feed) == started
        assert sorted(labels.tolist()) == sorted(ShardDataset(photos).labels())
    finally:
        feed.close()
    assert gone(started)


def test_an_error_in_a_process_reaches_the_loop_as_itself(photos, monkeypatch):
    """The reader's error, of its own type and with the process's traceback, as a DataLoader's
    worker's; the processes carry on, and the next epoch is whole."""
    ds = ShardDataset(photos)
    real = ds._collated

    def failing(indices):
        if ds.epoch == 0 and 5 in indices:
            raise OSError("shard unreadable")
        return real(indices)

    monkeypatch.setattr(ds, "_collated", failing)  # in each forked process's copy too
    feed = loader(ds, 4, processes=2, seed=0)
    try:
        with pytest.raises(OSError, match="shard unreadable") as raised:
            list(feed)
        assert "in feed process" in str(raised.value)
        feed.set_epoch(1)
        assert sum(len(images) for images, _ in feed) == len(ds)
    finally:
        feed.close()


def test_a_killed_process_is_said_so_and_the_next_epoch_starts_new_ones(photos):
    feed = loader(ShardDataset(photos), 2, processes=2, seed=0)
    try:
        batches = iter(feed)
        next(batches)
        victim = pids(feed)[1]
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"feed process 1 ended unexpectedly \(exit code -9\)"):
            for _ in batches:
                pass
        assert sum(len(images) for images, _ in feed) == len(ShardDataset(photos))
        assert victim not in pids(feed)
    finally:
        feed.close()


def test_the_processes_end_with_close_and_with_the_loader(photos):
    feed = loader(ShardDataset(photos), 4, processes=2)
    next(iter(feed))
    started = pids(feed)
    feed.close()
    assert gone(started, 5)
    feed = loader(ShardDataset(photos), 4, processes=2)
    held = iter(feed)
    next(held)
    started = pids(feed)
    del feed, held
    assert gone(started, 10)


FORKED_COPY = """
import gc, os, sys
from augpipe.readers import ShardDataset, loader
feed = loader(ShardDataset(sys.argv[1]), 4, processes=2)
rows = sum(len(images) for images, _ in feed)
started = [w.process.pid for w in feed._workers]
held = iter(feed)
first = len(next(held)[0])
child = os.fork()
if child == 0:  # a process forked while the feed lives (a script's os.fork) drops its copies
    if sys.argv[2] == "collect":
        del held, feed
        gc.collect()
        sys.stderr.flush()
        os._exit(0)
    again = sum(len(images) for images, _ in feed)  # its own processes: the parent's are left be
    print("child", again, flush=True)
    sys.exit(0)  # multiprocessing's exit, the held iterator and the loader collected there
os.waitpid(child, 0)
rest = first + sum(len(images) for images, _ in held)
print(rows, rest, [w.process.pid for w in feed._workers] == started, flush=True)
feed.close()
"""


@pytest.mark.parametrize("how", ["collect", "exit"])
def test_a_forked_copy_of_a_feed_leaves_the_processes_be(photos, tmp_path, how):
    """A process forked (by os.fork) while a feed is in an epoch holds a copy of the loader, of
    the epoch's iterator and of multiprocessing's children. Collected there, or at its exit,
    they neither call the epoch off, nor end, test or drain the parent's processes (the
    new user's: "can only test a child process"; the hostile tester's: the parent waited for
    ever, or its processes were terminated); iterated there, the copy starts its own."""
    script = tmp_path / "forked.py"
    script.write_text(FORKED_COPY)
    done = subprocess.run([sys.executable, str(script), str(photos), how], capture_output=True, text=True, timeout=120)
    rows = str(len(ShardDataset(photos)))
    want = ([] if how == "collect" else ["child", rows]) + [rows, rows, "True"]
    assert done.returncode == 0 and done.stdout.split() == want, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_options_a_feed_of_processes_refuses(photos):
    with pytest.raises(ValueError, match="give one or the other"):
        loader(ShardDataset(photos), processes=2, threads=2)
    with pytest.raises(ValueError, match="persistent_workers= are a DataLoader's"):
        loader(ShardDataset(photos), processes=2, num_workers=2)
    for processes, prefetch in ((True, 2), (2, 0), (-1, 2), (2, 1.5)):
        with pytest.raises(ValueError, match="whole numbers, 1 or more"):
            loader(ShardDataset(photos), processes=processes, prefetch=prefetch)
    with pytest.raises(ValueError, match="shuffles itself"):
        loader(ShardIterable(photos), processes=2, shuffle=True)


def test_batches_held_past_the_processes_slots_keep_their_pixels(photos):
    """More batches held than the processes' slots (16 each), over 2 epochs: each keeps its
    pixels (a slot is reused only once what it sent has ended here)."""
    ds = ShardDataset(photos)
    feed = loader(ShardDataset(photos), 1, processes=2, seed=5)
    generator = torch.Generator().manual_seed(5)
    try:
        held = []
        for _ in range(2):
            order = torch.randperm(len(ds), generator=generator).tolist()
            held += [(batch, order[k]) for k, batch in enumerate(feed)]
        assert len(held) > 2 * 16 * 2
        for (images, labels), index in held:
            image, label = ds[index]
            assert torch.equal(images[0], image) and labels.tolist() == [label]
    finally:
        feed.close()


HELD = """
import os, sys
from augpipe.readers import ShardDataset, loader
feed = loader(ShardDataset(sys.argv[1]), 2, processes=2)
held = iter(feed)
next(held)
print(*[w.process.pid for w in feed._workers], flush=True)
if sys.argv[2] == "wait":
    sys.stdin.read()
"""


def shared_files(pid_list: list[int]) -> list[str]:
    """torch's shared files of these processes (their names carry the pid that made them)."""
    if not os.path.isdir("/dev/shm"):
        return []
    return [name for name in os.listdir("/dev/shm") if any(f"_{pid}_" in name for pid in pid_list)]


@pytest.mark.parametrize("how", ["exit", "killed"])
def test_a_main_process_that_ends_or_is_killed_leaves_nothing(photos, tmp_path, how):
    """A loop held at the interpreter's exit ends cleanly (0); a SIGKILLed main process's feed
    processes end on their own, and their shared files go with them."""
    script = tmp_path / "held.py"
    script.write_text(HELD)
    main = subprocess.Popen([sys.executable, str(script), str(photos), "wait" if how == "killed" else "exit"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = [int(pid) for pid in main.stdout.readline().split()]
    assert len(started) == 2
    if how == "killed":
        main.send_signal(signal.SIGKILL)
    _, err = main.communicate(timeout=60)
    assert main.returncode == (-9 if how == "killed" else 0), err[-2000:]
    assert gone(started, 20)
    deadline = time.monotonic() + 10
    while shared_files(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not shared_files(started)


INTERRUPTED = """
import os, signal, sys, threading, time
import torch
from augpipe.readers import ShardDataset, loader


def slow(rgb):  # the loop then waits in the feed when Ctrl-C comes
    time.sleep(0.01)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def interrupt(after):
    threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT)).start()


feed = loader(ShardDataset(sys.argv[1], transform=slow), 8, processes=2, seed=1)
generator = torch.Generator().manual_seed(1)
rows = ShardDataset(sys.argv[1]).labels()


def epoch_right(epoch):
    feed.set_epoch(epoch)
    order = torch.randperm(len(rows), generator=generator).tolist()
    got = [labels.tolist() for _, labels in feed]
    return got == [[rows[i] for i in order[k:k + 8]] for k in range(0, len(order), 8)]


torch.randperm(len(rows), generator=generator)  # epoch 0's draw
try:
    batches = iter(feed)
    next(batches)
    interrupt(0.05)
    for _ in batches:  # Ctrl-C while the loop waits for a batch
        pass
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
print(epoch_right(1), epoch_right(2))
torch.randperm(len(rows), generator=generator)  # epoch 3's draw
try:
    for k, _ in enumerate(feed):
        if k == 2:
            interrupt(0.02)
            break  # the epoch is called off: Ctrl-C comes while its batches in flight are read
    time.sleep(0.5)
except KeyboardInterrupt:
    pass
print(epoch_right(4), epoch_right(5))
feed.close()
"""


def test_ctrl_c_in_the_feed_leaves_the_next_epochs_right(photos, tmp_path):
    """The hostile tester's finding: Ctrl-C while the loop waited for a batch left that process's
    batches in its pipe, and the next epochs began with them (and Ctrl-C while an epoch was called
    off, the same). Now a receive cut short ends the processes, and the next epoch starts new ones."""
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    done = subprocess.run([sys.executable, str(script), str(photos)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["interrupted", "True", "True", "True", "True"], done.stdout + done.stderr[-3000:]


def test_every_feed_takes_set_epoch(photos):
    """A new user's finding: the DataLoader `loader` returns had no set_epoch, where the other
    feeds had; it sets the reader's, which its persistent workers see."""
    for options in ({}, {"num_workers": 0}, {"threads": 2}, {"processes": 2}):
        ds = ShardDataset(photos, recipe=None if "threads" in options else "flips")
        feed = loader(ds, 4, **options)
        feed.set_epoch(3)
        assert ds.epoch == 3
        if options.get("processes"):
            feed.close()


def test_two_threads_reading_one_feed_take_turns(photos):
    """The hostile tester's finding: a second thread's iteration called the first's epoch off
    while the first read the same pipes (unpickling errors, a live process said to be gone, a
    hang). Now one thread talks to the processes at a time: one thread gets the whole epoch,
    the other what it took before it was called off, and the feed goes on whole."""
    import threading
    import warnings

    feed = loader(ShardDataset(photos), 4, processes=2, seed=1)
    rows = len(ShardDataset(photos))
    try:
        for _ in range(5):
            got = {}

            def eat(name):
                try:
                    got[name] = sum(len(labels) for _, labels in feed)
                except BaseException as error:  # noqa: BLE001 - reported by the assert below
                    got[name] = repr(error)

            with warnings.catch_warnings():  # the one called off is warned, when the threads overlap
                warnings.simplefilter("ignore")
                threads = [threading.Thread(target=eat, args=(name,)) for name in "ab"]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            assert not any(thread.is_alive() for thread in threads)
            assert all(isinstance(n, int) for n in got.values()) and rows in got.values(), got
        assert sum(len(labels) for _, labels in feed) == rows
    finally:
        feed.close()


def test_set_epoch_during_an_epoch_is_kept_for_the_next(photos):
    """The hostile tester's finding: a process starting its share late set the reader's epoch
    (shared memory, for the DataLoader's workers) back to the running one, undoing the main
    process's set_epoch for the next epoch (7 of 20 epochs with 4 processes). Now each process
    keeps its job's epoch to itself."""
    ds = ShardDataset(photos)
    feed = loader(ds, 2, processes=4, seed=0)
    try:
        for epoch in range(12):
            feed.set_epoch(epoch)
            batches = iter(feed)
            next(batches)
            feed.set_epoch(1000 + epoch)  # the next epoch's, set while this one runs
            for _ in batches:
                pass
            assert ds.epoch == 1000 + epoch
    finally:
        feed.close()
