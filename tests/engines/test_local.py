"""The local engine (augpipe/engines/local.py): a process pool, its workers given the environment of now."""

from __future__ import annotations

import os


def _probe(item, job, progress):
    return os.environ.get("AUGPIPE_PROBE")


class _Item:
    cost = 1


def test_workers_take_the_environment_of_now_not_the_fork_servers(folder, tmp_path, monkeypatch):
    """Credentials or an endpoint set after a first run (a fork server started then) reach the
    workers of the next: a library user's S3 run does not go to AWS instead of their server."""
    from augpipe import ExpandOptions, expand
    from augpipe.engines.local import LocalEngine

    expand(folder, "flips", tmp_path / "first", ExpandOptions(workers=2, progress=False))
    monkeypatch.setenv("AUGPIPE_PROBE", "set later")
    with LocalEngine(2) as engine:
        assert set(engine.map(_probe, [_Item(), _Item(), _Item()], None, lambda n: None)) == {"set later"}


_FORKED = """
import json, time
from augpipe.engines.local import Forked

def child(send, fail):
    for n in (3, 4, 5):
        send("progress", n)
    if fail:
        raise ValueError("the child's own error")
    send("done", "its result")
    send("progress", 7)

out = []
for fail in (False, True):
    forked = Forked(child, fail)
    time.sleep(0.5)
    so_far = forked.progress_so_far()
    try:
        got = forked.receive("done")
    except ValueError as exc:
        got = f"raised: {exc}"
    out.append([so_far, got, forked.progress_so_far()])
    forked.close()
    forked.close()
print(json.dumps(out))
"""


def test_a_forked_childs_progress_is_taken_without_waiting_and_its_messages_kept_in_order():
    """The command shows a hashing bar only for what is left when it gets there: the progress
    already sent is summed without waiting, and the message after it (a result, an error) is
    still the next `receive`'s. (Forked from a process of one thread, as the command forks.)"""
    import json
    import subprocess
    import sys

    from conftest import ENV

    done = subprocess.run([sys.executable, "-c", _FORKED], env={**ENV, **os.environ}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[12, "its result", 7], [12, "raised: the child's own error", 0]]
