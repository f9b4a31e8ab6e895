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
