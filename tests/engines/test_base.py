"""The Engine contract (augpipe/engines/base.py), kept by the local and the Ray engine."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["local", "ray"])
def test_every_engine_keeps_the_engine_protocol(name):
    import inspect

    from augpipe.engines import make_engine
    from augpipe.engines.base import Engine

    if name == "ray":
        pytest.importorskip("ray")
    engine = make_engine(name, 1)
    assert isinstance(engine, Engine)
    for method in ("map", "describe", "start_early"):
        wanted = list(inspect.signature(getattr(Engine, method)).parameters)[1:]
        assert len(inspect.signature(getattr(engine, method)).parameters) == len(wanted), method
