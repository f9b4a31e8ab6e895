"""Ctrl-C and SIGTERM, raised where it is safe.

A KeyboardInterrupt raised inside `concurrent.futures` or `multiprocessing` internals can leave
one of their locks held, and the process then hangs at exit. While an engine runs, a signal is
only noted; the engine raises it at its next safe point (between waits, at a progress report).
Elsewhere it is raised at once. Further signals are ignored: the clean-up must not be cut short.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM: the run stops as for Ctrl-C, cleaning up on its way out."""


_state = {"defer": 0, "pending": None, "raised": None, "installed": False, "pid": None}


def _handler(signum, frame) -> None:
    if os.getpid() != _state["pid"]:  # a process forked from this one, before it set its own
        in_worker(signum, frame)
        return
    # ignored, not Python no-ops: the interpreter's exit sets a Python handler back to the
    # default, and a late Ctrl-C would then kill the process mid-way through its clean-up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
    _state["raised"] = exc  # `check()` raises it again should it be lost on its way (`lost`)
    if _state["defer"]:
        _state["pending"] = exc
    else:
        raise exc


def in_worker(signum, frame) -> None:
    """The handler of a process augpipe starts for a run (a worker, a set-up process): SIGTERM
    (the parent's terminate()) ends it at once; Ctrl-C is the parent's to handle. A Python
    function, not SIG_DFL and SIG_IGN, so that a signal caught under the handler it inherited
    is handled, not reported by CPython as "ignored due to race condition" (a worker ends by
    os._exit, so the interpreter's exit never sets this handler back to the default)."""
    if signum == signal.SIGTERM:
        for end in _AT_TERM:  # its own children first (a hashing process's helpers): they are reaped
            end()
        os._exit(128 + signum)


_AT_TERM: list = []


def at_term(end) -> None:
    """`end()` runs in a process augpipe started when SIGTERM ends it, before it exits."""
    if end not in _AT_TERM:
        _AT_TERM.append(end)


def install() -> tuple:
    """For a process augpipe owns (the command line). Returns the handlers it replaced (`restore`)."""
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    _state["installed"], _state["pid"], _state["raised"], _state["pending"] = True, os.getpid(), None, None
    return previous


def restore(previous: tuple) -> None:
    """The handlers `install` replaced, back: a program that called the command line itself
    keeps its own Ctrl-C (ours, or ignored after a signal, would stay)."""
    for sig, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    _state["installed"], _state["raised"], _state["pending"] = False, None, None


def install_in_worker() -> None:
    """For a process augpipe starts for a run, first thing (`in_worker`)."""
    signal.signal(signal.SIGINT, in_worker)
    signal.signal(signal.SIGTERM, in_worker)


def reinstall() -> None:
    """After a library that sets its own handlers (ray.init turns SIGTERM into SystemExit)."""
    if _state["installed"] and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) not in (_handler, signal.SIG_IGN):
                signal.signal(sig, _handler)


@contextmanager
def deferred():
    """Signals are held until `check()` while this is active (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
    check()


def check() -> None:
    exc, _state["pending"] = _state["pending"], None
    if exc is None:
        exc = lost()
    if exc is not None:
        raise exc


def lost() -> BaseException | None:
    """The signal raised before, where the run goes on as if it never came: code not augpipe's
    swallowed it (a handler runs between any two bytecodes: one that ran inside the compile of an
    import lost its exception there), and further signals are ignored since. None while an
    exception is being handled (the clean-up the first raise started) or none came."""
    raised = _state["raised"]
    return raised if raised is not None and sys.exc_info()[1] is None else None


def handled() -> None:
    """The signal's exception reached the command's end: nothing is lost."""
    _state["raised"] = None


def checked(on_progress):
    """A progress callback that is also a safe point."""
    def report(n: int) -> None:
        on_progress(n)
        check()

    return report
