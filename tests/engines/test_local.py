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
