"""The loop every trainer shares (augpipe/training/loop.py): choosing the device, --compare's
interval. Needs the train extra."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import numpy as np  # noqa: E402

from augpipe.options import TrainOptions  # noqa: E402
from augpipe.training.bootstrap import RESAMPLES, SEED  # noqa: E402
from augpipe.training.classification import Classification  # noqa: E402
from augpipe.training.loop import resolve_device  # noqa: E402
from augpipe.training.run import train  # noqa: E402
from conftest import faint_colours, one_line  # noqa: E402


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


def test_compare_interval_is_the_paired_bootstrap_of_both_final_models(tmp_path, monkeypatch):
    seen = []  # each model's predictions on the validation images, and their labels
    scorer = Classification.scorer
    monkeypatch.setattr(Classification, "scorer", lambda self, pred, val: seen.append((pred, val.y.numpy())) or
                        scorer(self, pred, val))
    result = train(faint_colours(tmp_path / "faint"), tmp_path / "run",
                   TrainOptions(epochs=2, size=8, compare=True, progress=False, log=lambda *a: None, device="cpu"))
    compare = result["compare"]
    (expanded, truth), (originals, _) = seen
    e, o = (expanded == truth).astype(float), (originals == truth).astype(float)
    assert e.mean() == result["history"][-1]["val_acc"] and o.mean() == compare["originals"][-1]["val_acc"]
    n = len(truth)
    draws = np.random.default_rng(SEED).integers(0, n, (RESAMPLES, n))  # the same draws, scored here by index
    low, high = np.percentile(e[draws].mean(1) - o[draws].mean(1), [2.5, 97.5])
    interval = compare["interval"]
    assert (interval["low"], interval["high"]) == pytest.approx((low, high), abs=1e-12)
    assert interval["low"] < interval["high"] and compare["validation_images"] == n
    assert compare["verdict"] == ("lift" if low > 0 else "loss" if high < 0 else "no_difference")
