"""Semantic segmentation's trainer (augpipe/training/segmentation.py). Needs the train extra."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from augpipe.readers import ShardDataset  # noqa: E402


def test_instance_masks_of_mixed_sizes_and_empty_images_paint_where_they_are(sparse):
    from augpipe.dataset import open_dataset
    from augpipe.training.segmentation import read_masks

    size = 16
    x, masks, (sources, copies, _) = read_masks(open_dataset(sparse), "validation", size, False, 2)
    rows = list(ShardDataset(sparse, "validation", box_format="xyxy"))
    assert len(rows) == len(masks)
    for (_, target), mask in zip(rows, masks):
        expected = np.zeros((size, size), np.uint8)
        if len(target["masks"]):
            union = target["masks"].numpy().max(0)
            expected = cv2.resize(union, (size, size), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(mask, expected)


def test_the_resampled_mean_iou_is_that_of_the_resampled_images():
    from augpipe.training.bootstrap import resamples
    from augpipe.training.metrics import confusion, segmentation_scores
    from augpipe.training.segmentation import IGNORE, Segmentation, image_confusions

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (12, 8, 8)).astype(np.uint8)
    truth[0, :2] = IGNORE
    truth[3] = 0  # an image of one class
    right = np.where(truth == IGNORE, 0, truth)
    pred = np.where(rng.random(truth.shape) < 0.7, right, rng.integers(0, 4, truth.shape)).astype(np.uint8)
    for i in range(12):
        assert np.array_equal(image_confusions(truth, pred, 4)[i], confusion(truth[i], pred[i], 4, IGNORE))
    val = type("Val", (), {"y": torch.from_numpy(truth)})()
    scorer = Segmentation(["a", "b", "c", "d"], 8, []).scorer(pred, val)
    weights = next(resamples(12, 30, seed=1))
    for w, got in zip(weights, scorer(weights)):
        drawn = np.repeat(np.arange(12), w.astype(int))
        assert got == pytest.approx(segmentation_scores(confusion(truth[drawn], pred[drawn], 4, IGNORE))["mean_iou"])
    assert scorer(np.ones((1, 12)))[0] == pytest.approx(segmentation_scores(confusion(truth, pred, 4, IGNORE))["mean_iou"])
