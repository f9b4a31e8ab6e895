"""Ctrl-C and SIGTERM (augpipe/signals.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from augpipe.processes import descendants
from conftest import ENV, augpipe, session_processes, wait_for_shards


RESUME = "finished shards are kept; run the same command again to resume"
# with it the same command writes every shard anew: a hostile tester followed "the same command" and nothing resumed
RESUME_OVERWRITE = ("finished shards are kept; run the same command again without --overwrite to resume (with it, "
                    "every shard is written anew)")


@pytest.mark.parametrize("overwrite, rerun", [((), RESUME), (("--overwrite",), RESUME_OVERWRITE)])
def test_three_ctrl_cs_print_one_line(tmp_path, big, overwrite, rerun):
    out = tmp_path / "out"
    proc = subprocess.Popen(augpipe("expand", big, "-r", "classic", "-k", "4", "--shard-size", "100KB", "-o", out,
                                    "-w", "2", "-q", *overwrite), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    wait_for_shards(out)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        time.sleep(0.05)
    proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"augpipe: error: interrupted: {rerun}"], err
    time.sleep(1)
    assert session_processes(proc.pid) == []


def test_a_worker_killed_mid_run_ends_the_run_in_one_line_and_a_rerun_finishes(tmp_path, big):
    """SIGTERM to one of the local engine's workers ends it (as the engine's own clean-up does):
    the run says so in one line, and the same command again finishes the output. 16 copies: a
    run of 4 could end before the signal on a fast machine."""
    out = tmp_path / "out"
    command = augpipe("expand", big, "-r", "classic", "-k", "16", "--shard-size", "100KB", "-o", out, "-w", "2", "-q")
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    wait_for_shards(out)
    workers = descendants(proc.pid)  # the pool's
    assert workers
    os.kill(workers[0], signal.SIGTERM)
    proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert proc.returncode == 3 and err.strip().splitlines() == [
        "augpipe: error: a worker process died (killed, or out of memory): finished shards are kept; run the same "
        "command again to resume"], err
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


CHILD = r"""
import os, signal, sys, time
from augpipe import signals

signals.install()
pid = os.fork()
if pid == 0:  # a worker forked before it set its own handlers: SIGTERM ends it, Ctrl-C does not
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted")
os.kill(os.getpid(), signal.SIGINT)  # the clean-up goes on: later signals are ignored
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("cleaned up")
"""


def test_signals_on_their_way_are_handled_never_reported_as_a_race():
    """A process forked from the command line before it set its own handlers ends on SIGTERM and
    goes on after Ctrl-C (the command line's handler knows it is not in its own process); a
    worker's own handlers are Python functions. A worker had set SIG_IGN and SIG_DFL over the
    inherited handler, and a signal caught under that one made CPython print a traceback,
    "Signal 15 ignored due to race condition" (CI, test_three_ctrl_cs_print_one_line)."""
    import sys

    done = subprocess.run([sys.executable, "-c", CHILD], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[:3] == ["child 143", "interrupted", "cleaned up"], done.stdout + done.stderr
    assert done.stderr == "" and done.returncode == 0, done.stderr


def _run_python(code: str, *args) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=120)


def test_a_signal_an_import_swallowed_is_raised_at_the_next_safe_point():
    """A handler runs between any two bytecodes: one that ran inside an import's compile() lost
    its exception there, and the run went on with every later signal ignored (a hostile tester's,
    2 of 68 SIGTERMs in the first second)."""
    done = _run_python("""
import os, signal
from augpipe import signals
signals.install()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pthread_kill(__import__("threading").get_ident(), 0)  # lets the handler run here
except signals.Terminated:
    pass  # swallowed, as code not augpipe's may
try:
    signals.check()
except signals.Terminated:
    print("raised again")
signals.handled()
signals.check()
print("then nothing")
""")
    assert done.returncode == 0 and done.stdout.splitlines() == ["raised again", "then nothing"], done.stderr


def test_sigterm_while_the_command_line_is_read_is_one_line(tmp_path, folder):
    """At the moment the arguments' parsing imports pydantic: 'terminated', 143 (a traceback, 1)."""
    done = _run_python("""
import importlib.abc, os, signal, sys
class AtImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pydantic":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
sys.meta_path.insert(0, AtImport())
from augpipe.cli import main
sys.argv[0] = "augpipe"
main()
""", "expand", folder, "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.returncode == 143 and done.stderr.strip().splitlines()[-1].startswith("augpipe: error: terminated")
    assert "Traceback" not in done.stderr


def test_a_program_that_calls_main_twice_runs_the_second_after_an_interrupted_first(tmp_path, folder):
    """The first call's Ctrl-C is that call's: the second ran as 'interrupted' too, and so did a
    library call after (a hostile tester's); and the program's own Ctrl-C handler is back after each."""
    done = _run_python("""
import os, signal, sys, time
import augpipe.pipeline as pipeline
from augpipe.cli import main
mine = lambda signum, frame: None
signal.signal(signal.SIGINT, mine)
expand = pipeline._expand
def interrupted(*args):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
pipeline._expand = interrupted
src, out = sys.argv[1:3]
for k in range(2):
    try:
        main(["expand", src, "-r", "flips", "-o", f"{out}{k}", "-q"])
    except SystemExit as exc:
        print("result", k, exc.code, signal.getsignal(signal.SIGINT) is mine)
    pipeline._expand = expand
import augpipe
augpipe.expand(src, "flips", f"{out}2", augpipe.ExpandOptions(progress=False, workers=1))
print("result library ok")
""", folder, tmp_path / "out")
    results = [line for line in done.stdout.splitlines() if line.startswith("result ")]
    assert results == ["result 0 130 True", "result 1 0 True", "result library ok"], done.stdout + done.stderr
