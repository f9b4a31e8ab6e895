"""Ctrl-C and SIGTERM (augpipe/signals.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import ENV, augpipe, session_processes, wait_for_shards


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
