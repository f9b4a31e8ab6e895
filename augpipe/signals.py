"""Ctrl-C and SIGTERM, raised where it is safe.

A KeyboardInterrupt raised inside `concurrent.futures` or `multiprocessing` internals can leave
one of their locks held, and the process then hangs at exit. While an engine runs, a signal is
only noted; the engine raises it at its next safe point (between waits, at a progress report).
Elsewhere it is raised at once. Further signals are ignored: the clean-up must not be cut short.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM: the run stops as for Ctrl-C, cleaning up on its way out."""


_state = {"defer": 0, "pending": None, "installed": False}


def _handler(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
    if _state["defer"]:
        _state["pending"] = exc
    else:
        raise exc


def install() -> None:
    """For a process augpipe owns (the command line)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    _state["installed"] = True


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
    if exc is not None:
        raise exc


def checked(on_progress):
    """A progress callback that is also a safe point."""
    def report(n: int) -> None:
        on_progress(n)
        check()

    return report
