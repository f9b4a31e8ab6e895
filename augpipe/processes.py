"""Processes augpipe starts die with the one that started them; a process is told from a new one
that reuses its pid by its start time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time


def process_start(pid: int) -> str | None:
    """When a process started (Linux, in clock ticks since boot), or None where that is unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def alive(pid: int, started: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or process_start(pid) in (None, started)


def die_with_parent(parent: int) -> None:
    """This process ends when `parent` does: the kernel sends SIGKILL on Linux; elsewhere a
    thread looks every half second."""
    if sys.platform.startswith("linux"):
        _parent_death_signal(signal.SIGKILL)
    else:
        def watch() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() == 1 or not alive(parent):
                    os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if not alive(parent):  # the parent died before the line above took effect
        os._exit(1)


def _parent_death_signal(sig: int) -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


_GUARD = """
import os, signal, sys
def end(*_):
    for item in sys.argv[1:]:
        pid, started = item.split(":")
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[19].decode() == started:
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, IndexError):
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, end)
if os.getppid() != int(os.environ["AUGPIPE_GUARDED"]):
    end()
while True:
    signal.pause()
"""


def guard(pids: list[int]) -> subprocess.Popen | None:
    """A small process that ends `pids` when this one dies, however it dies (Linux): for the
    processes a library starts for us and would leave behind when we are killed (Ray's agents
    wait a minute to report their raylet's death to a GCS that died with it). Kill the guard
    itself (SIGKILL) once those processes are shut down the normal way."""
    if not sys.platform.startswith("linux"):
        return None
    items = [f"{p}:{s}" for p in pids if (s := process_start(p)) is not None]
    return subprocess.Popen([sys.executable, "-c", _GUARD, *items], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "AUGPIPE_GUARDED": str(os.getpid())},
                            preexec_fn=lambda: _parent_death_signal(signal.SIGTERM))
