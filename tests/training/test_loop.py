"""The loop every trainer shares (augpipe/training/loop.py): choosing the device. Needs the train extra."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from augpipe.training.loop import resolve_device  # noqa: E402
from conftest import one_line  # noqa: E402


@pytest.mark.parametrize("device, needle", [("mps", "--device mps: no Apple GPU here"),
                                            ("cuda", "--device cuda: no CUDA device here")])
def test_an_absent_device_is_one_line(cli, colours, tmp_path, device, needle):
    if (torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()):
        pytest.skip(f"this machine has {device}")
    result = cli("train", colours, "--device", device, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and needle in one_line(result.output)


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps" and resolve_device("mps").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
