"""Processes augpipe starts die with the one that started them; a process is told from a new one
that reuses its pid by its start time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


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


_GUARD = r"""
import os, signal, sys, time
parent, tag = int(os.environ["AUGPIPE_GUARDED"]), sys.argv[1].encode()
seen = {}  # pid -> start time: the parent's descendants, looked at twice a second

def start(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None

folders = [f.encode() for f in os.environ.get("AUGPIPE_GUARD_FOLDERS", "").split(os.pathsep) if f]
titles = tuple(t.encode() for t in os.environ.get("AUGPIPE_GUARD_TITLES", "").split(os.pathsep) if t)

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None

guarded_args = cmdline(parent)

def mine(pid):
    # the library's: its command line names a file of the library, or its title is the library's
    # (one forked from the guarded process, not yet running its own program, is looked at again)
    if not folders and not titles:
        return True
    got = cmdline(pid)
    if got is None or got == guarded_args:
        return False
    args = got.split(b"\0")
    return args[0].startswith(titles) or any(f in a for a in args for f in folders)

def look():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    children.setdefault(int(fh.read().rsplit(b")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    todo = [(parent, False)]
    while todo:
        pid, inside = todo.pop()
        for child in children.get(pid, []):
            if child != os.getpid():
                ours = inside or child in seen or mine(child)
                if ours:
                    seen.setdefault(child, start(child))
                todo.append((child, ours))

def tagged():
    # what the run started, found by the variable it inherited: a process whose parent died
    # before this guard looked (Ray's agents, started by a raylet killed a moment later)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if tag in fh.read().split(b"\0") and mine(int(entry)):
                        yield int(entry)
            except OSError:
                pass

def end(*_):
    for pid, started in list(seen.items()):
        if started is not None and start(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for _ in range(3):  # a process being started as its parent died shows up a moment later
        for pid in tagged():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.3)
    os._exit(0)

signal.signal(signal.SIGTERM, end)
for item in sys.argv[2:]:
    pid, started = item.split(":")
    seen[int(pid)] = started
while True:
    if os.getppid() != parent:
        end()
    look()
    time.sleep(0.5)
"""

GUARD_TAG = "AUGPIPE_GUARD_TAG"


def guard(pids: list[int], tag: str = "", library: Library | None = None) -> subprocess.Popen | None:
    """A small process that ends `pids`, and whatever this process starts while it runs, when
    this one dies, however it dies (Linux): for the processes a library starts for us and would
    leave behind when we are killed (Ray's agents wait a minute to report their raylet's death to
    a GCS that died with it). With `library`, only its processes (`Library.runs`) and all below
    them: the caller's own children are not ours to end. With `tag` (set as os.environ[GUARD_TAG]
    before the library starts anything), every such process that inherited it is ended too,
    orphans included. Kill the guard itself (SIGKILL) once those processes are shut down the
    normal way."""
    if not sys.platform.startswith("linux"):
        return None
    items = [f"{p}:{s}" for p in pids if (s := process_start(p)) is not None]
    marker = f"{GUARD_TAG}={tag}" if tag else f"{GUARD_TAG}=-"
    return subprocess.Popen([sys.executable, "-c", _GUARD, marker, *items], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**{k: v for k, v in os.environ.items() if k != GUARD_TAG},
                                 "AUGPIPE_GUARDED": str(os.getpid()),
                                 "AUGPIPE_GUARD_FOLDERS": os.pathsep.join(library.folders if library else ()),
                                 "AUGPIPE_GUARD_TITLES": os.pathsep.join(library.titles if library else ())},
                            preexec_fn=_guard_starts)


def _guard_starts() -> None:
    """The guard's process, before its program: ended by SIGTERM when this one dies; deaf to a
    terminal's Ctrl-C and hang-up, which reach its whole process group (this one ends by them)"""
    _parent_death_signal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored signal stays ignored across exec
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@dataclass(frozen=True)
class Library:
    """How a library's own processes are told from others: their command line names a file in
    one of `folders`, or their title (a process that renamed itself) starts with one of `titles`."""

    folders: tuple[str, ...]
    titles: tuple[str, ...] = ()

    def runs(self, pid: int) -> bool:
        """Whether `pid` is one of the library's (not one forked from this process that has not
        yet started its own program: it has this one's command line). A process still inside its
        exec has no command line yet (its starter may already have been told the exec went
        through): it is looked at again, for up to MID_EXEC seconds."""
        try:
            got = _cmdline(pid)
            for _ in range(int(MID_EXEC / 0.005)):
                if got or _state(pid) in (b"Z", b"X"):  # a dead one has none either
                    break
                time.sleep(0.005)
                got = _cmdline(pid)
            if got == _cmdline("self"):
                return False
        except OSError:
            return False
        args = got.decode(errors="replace").split("\0")
        return args[0].startswith(self.titles) or any(f in a for a in args for f in self.folders)


MID_EXEC = 0.2


def _cmdline(pid) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read()


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0]


def tree_of(roots: list[int]) -> list[tuple[int, str]]:
    """`roots` and every live process below them, each with its start time."""
    pids = set(roots).union(*(descendants(pid) for pid in roots))
    return [(pid, started) for pid in sorted(pids) if (started := process_start(pid)) is not None]


def end_leftovers(tree: list[tuple[int, str]]) -> None:
    """SIGKILL what is still alive of `tree` (from `tree_of`), the very processes (their start
    times checked): a library's shut down the normal way, of which some outlived that."""
    for pid, started in tree:
        if process_start(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
