"""--compare's interval: a paired bootstrap over the validation images.

Each resample draws N of the N validation images with replacement, and both models are scored on
the same draw: the spread of the difference is what the choice of validation images alone can
move the lift by. A task scores a draw through its scorer (Task.scorer): a function of weights
(B×N, how often each image is drawn in each of B resamples) to its headline figure under each,
which with every weight 1 is the figure itself. Accuracy and the share with IoU ≥ 0.5 are means of
per-image results; mean IoU sums per-image confusion matrices; mAP ranks the drawn images'
detections again (metrics.resampled_map). The interval is the resampled lifts' percentiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0  # fixed: the same predictions always get the same interval
MIN_IMAGES = 20  # fewer validation images than this: too few for the bootstrap to be trusted
CELLS = 1 << 22  # the most resamples × images drawn at once

Scorer = Callable[[np.ndarray], np.ndarray]


def resamples(n: int, count: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """`count` draws of n images out of n with replacement, as weights (rows × n: how often each
    image is drawn), a few thousand rows at a time."""
    rng = np.random.default_rng(seed)
    step = max(1, CELLS // max(1, n))
    for start in range(0, count, step):
        rows = min(step, count - start)
        drawn = rng.integers(0, n, (rows, n)) + n * np.arange(rows)[:, None]
        yield np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def paired_interval(expanded: Scorer, originals: Scorer, n: int, count: int = RESAMPLES,
                    level: float = LEVEL, seed: int = SEED) -> dict:
    """The `level` percentile interval of expanded − originals over `count` paired resamples."""
    lifts = np.concatenate([expanded(w) - originals(w) for w in resamples(n, count, seed)])
    low, high = np.percentile(lifts, [50 * (1 - level), 50 * (1 + level)])
    return {"low": float(low), "high": float(high), "level": level, "resamples": count, "seed": seed,
            "method": "paired bootstrap over validation images, percentile interval"}


def verdict(interval: dict, n: int) -> str:
    """too_few_images; same (the two models score alike on every resample); lift (the interval
    above 0), loss (below 0) or no_difference (it holds 0)."""
    if n < MIN_IMAGES:
        return "too_few_images"
    if interval["low"] == interval["high"] == 0:
        return "same"
    return "lift" if interval["low"] > 0 else "loss" if interval["high"] < 0 else "no_difference"


def images_needed(lift: float, interval: dict, n: int) -> int | None:
    """About how many validation images would narrow the interval to ±|lift| (its width falls as
    1/√n), were the lift to stay what it is; None for no lift at all."""
    if lift == 0:
        return None
    half = (interval["high"] - interval["low"]) / 2
    return int(np.ceil(n * (half / abs(lift)) ** 2))


def mean_scorer(per_image) -> Scorer:
    """A figure that is the mean of a per-image result (1 right, 0 wrong; an IoU ≥ 0.5 hit)."""
    values = np.asarray(per_image, dtype=np.float64).reshape(-1)
    return lambda weights: weights @ values / max(1, len(values))
