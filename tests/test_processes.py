"""Processes augpipe starts die with the one that started them (augpipe/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ENV, augpipe, session_processes, wait_for_shards


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_a_released_guard_ends_what_outlived_a_normal_shutdown_and_nothing_else():
    """Under load Ray's workers and agents can outlive `ray.shutdown`: released, the guard ends
    whatever carries its tag, orphans in sessions of their own included, and leaves the rest."""
    from augpipe.processes import GUARD_TAG, guard, release

    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    tag = f"test-{os.getpid()}-{time.time_ns()}"
    guarded = guard([], tag)
    tagged = subprocess.Popen([sys.executable, "-c", stubborn], env={**os.environ, GUARD_TAG: tag},
                              start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
    try:
        started = time.monotonic()
        release(guarded)
        assert guarded.returncode is not None and time.monotonic() - started < 10
        tagged.wait(timeout=5)
        assert tagged.returncode == -signal.SIGKILL
        assert _alive(other.pid)
    finally:
        for proc in (tagged, other):
            proc.kill()
            proc.wait()
