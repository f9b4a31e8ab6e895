"""Processes augpipe starts die with the one that started them (augpipe/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ENV, ROOT, augpipe, session_processes, wait_for_shards


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



def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_leftovers_of_a_tree_are_ended_and_nothing_else():
    """What a library shut down the normal way and outlived that (Ray's workers and agents under
    load): the tree seen before, ended after, orphans in sessions of their own included; a sibling
    outside the tree stays."""
    from augpipe.processes import end_leftovers, tree_of

    spawn = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {STUBBORN!r}], start_new_session=True)\ntime.sleep(60)\n"
    root = subprocess.Popen([sys.executable, "-c", spawn])
    other = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(tree := tree_of([root.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tree) == 2 and other.pid not in dict(tree)
        end_leftovers(tree)
        root.wait(timeout=5)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid, _ in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid, _ in tree) and _alive(other.pid)
    finally:
        for proc in (root, other):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_the_guard_outlives_a_terminals_ctrl_c():
    """Ctrl-C reaches the whole process group: the guard stays to end what the command leaves if
    the command is then killed during its cleanup."""
    from augpipe.processes import guard

    guarded = guard([])
    try:
        time.sleep(0.5)
        guarded.send_signal(signal.SIGINT)
        guarded.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert guarded.poll() is None
        guarded.terminate()
        assert guarded.wait(timeout=5) == 0  # SIGTERM: it ends what it guards and exits
    finally:
        guarded.kill()
        guarded.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_the_guard_of_a_library_ends_its_processes_and_not_the_callers(tmp_path):
    """The guarding process killed: the library's processes (told by their command line) and all
    below them end; the caller's own children, in its session or their own and carrying the tag
    alike, stay."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "prog.py").write_text(
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen(['sleep', '60'])\nopen({str(lib / 'child')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n")
    driver = f"""
import os, subprocess, sys, time
from augpipe.processes import GUARD_TAG, Library, guard
os.environ[GUARD_TAG] = "test-tag"
guarded = guard([], "test-tag", Library(({str(lib)!r},)))
library = subprocess.Popen([sys.executable, {str(lib / 'prog.py')!r}])
own = subprocess.Popen(["sleep", "60"])
own_session = subprocess.Popen(["sleep", "60"], start_new_session=True)
while not os.path.exists({str(lib / 'child')!r}):
    time.sleep(0.05)
time.sleep(1.2)  # the guard looks twice a second
print(library.pid, open({str(lib / 'child')!r}).read(), own.pid, own_session.pid, flush=True)
time.sleep(60)
"""
    (tmp_path / "driver.py").write_text(driver)  # not in its command line: its children start as it
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    pids = []
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4, pids
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids[:2]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [_alive(pid) for pid in pids] == [False, False, True, True]
    finally:
        proc.kill()
        proc.wait()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_a_process_still_inside_its_exec_is_looked_at_again(monkeypatch, tmp_path):
    """CI, on a loaded machine: a Ray program the failed start had just launched was not ended,
    because its command line was read while it was still inside its exec (empty: the caller had
    been told the exec went through). Such a process is read again; a dead one is not waited for."""
    import augpipe.processes as processes
    from augpipe.processes import Library

    script = tmp_path / "lib" / "prog.py"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        real, reads = processes._cmdline, []

        def mid_exec(pid):
            reads.append(pid)
            return b"" if pid == proc.pid and reads.count(proc.pid) <= 3 else real(pid)

        monkeypatch.setattr(processes, "_cmdline", mid_exec)
        assert Library((str(script.parent),)).runs(proc.pid) and reads.count(proc.pid) == 4
    finally:
        proc.kill()
        proc.wait()
    dead = subprocess.Popen(["true"])
    while processes._state(dead.pid) != b"Z":
        time.sleep(0.01)
    started = time.perf_counter()
    assert not Library((str(script.parent),)).runs(dead.pid) and time.perf_counter() - started < processes.MID_EXEC / 2
    dead.wait()
