"""--compare's interval (augpipe/training/bootstrap.py): the paired bootstrap against a slow one
written here, against the normal approximation, and its verdicts on planted per-image results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augpipe.training import bootstrap
from augpipe.training.bootstrap import (MIN_IMAGES, RESAMPLES, SEED, images_needed, mean_scorer, paired_interval,
                                        resamples, verdict)


def planted(n: int, both: int, only_expanded: int, only_originals: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image results (1 right): `both` right in both models, then the images only one gets right."""
    e, o = np.zeros(n), np.zeros(n)
    e[:both] = o[:both] = 1
    e[both:both + only_expanded] = 1
    o[both + only_expanded:both + only_expanded + only_originals] = 1
    return e, o


def slow_interval(e: np.ndarray, o: np.ndarray, draws: np.ndarray) -> tuple[float, float]:
    """The bootstrap by hand: each resample's images taken by index, the lift of their means."""
    lifts = [e[idx].mean() - o[idx].mean() for idx in draws]
    return tuple(np.percentile(lifts, [2.5, 97.5]))


def test_resamples_draw_n_of_n_with_replacement_and_repeat(monkeypatch):
    monkeypatch.setattr(bootstrap, "CELLS", 7 * 30)  # 7 resamples at a time: the chunks add up
    weights = np.concatenate(list(resamples(30, 100, seed=3)))
    assert weights.shape == (100, 30) and (weights.sum(1) == 30).all()
    assert np.array_equal(weights, np.concatenate(list(resamples(30, 100, seed=3))))
    assert (weights == 0).mean() == pytest.approx((29 / 30) ** 30, abs=0.03)  # ~36% of images left out a draw


def test_the_interval_is_the_slow_bootstraps_on_the_same_draws():
    rng = np.random.default_rng(5)
    e, o = (rng.random(40) < 0.7).astype(float), (rng.random(40) < 0.6).astype(float)
    draws = np.random.default_rng(SEED).integers(0, 40, (RESAMPLES, 40))
    got = paired_interval(mean_scorer(e), mean_scorer(o), 40)
    assert (got["low"], got["high"]) == pytest.approx(slow_interval(e, o, draws), abs=1e-12)
    assert got["level"] == 0.95 and got["resamples"] == RESAMPLES


def test_the_interval_is_about_the_normal_approximations():
    e, o = planted(400, 250, 60, 30)  # lift 30/400 = 0.075
    d = e - o
    half = 1.96 * d.std() / math.sqrt(len(d))
    got = paired_interval(mean_scorer(e), mean_scorer(o), 400)
    assert got["low"] == pytest.approx(0.075 - half, abs=0.006) and got["high"] == pytest.approx(0.075 + half, abs=0.006)


def test_verdicts_on_planted_results():
    def judged(e, o):
        return verdict(paired_interval(mean_scorer(e), mean_scorer(o), len(e)), len(e))

    assert judged(*planted(30, 20, 0, 1)) == "no_difference"  # the issue's −0.033: one image of 30
    assert judged(*planted(300, 150, 60, 5)) == "lift"
    assert judged(*planted(300, 150, 5, 60)) == "loss"
    assert judged(*planted(30, 20, 0, 0)) == "same"
    assert judged(*planted(MIN_IMAGES - 1, 0, MIN_IMAGES - 1, 0)) == "too_few_images"  # even all against none


def test_images_needed_scales_with_the_square_of_the_width():
    assert images_needed(0.05, {"low": -0.05, "high": 0.15}, 100) == 400  # ±0.1 → ±0.05: four times the images
    assert images_needed(0.0, {"low": -0.05, "high": 0.05}, 100) is None


def test_two_thousand_resamples_of_2000_images_are_scored_a_block_at_a_time():
    """What keeps --compare's interval quick, counted rather than timed: each scorer sees thousands
    of resamples a call, and every one of the 2,000 is scored."""
    e, o = planted(2000, 1200, 120, 80)
    seen = []

    def counted(scorer):
        def score(weights):
            seen.append(len(weights))
            return scorer(weights)
        return score

    interval = paired_interval(counted(mean_scorer(e)), counted(mean_scorer(o)), 2000)
    assert sum(seen) == 2 * 2000 and len(seen) <= 2 * 2
    assert interval["low"] < (120 - 80) / 2000 < interval["high"]
