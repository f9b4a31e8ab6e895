"""The trainers' scores (augpipe/training/metrics.py), checked by hand. Needs the train extra."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from augpipe.training.metrics import average_precision, box_iou, confusion, mean_average_precision, segmentation_scores  # noqa: E402


def detections(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float), "labels": np.array(labels)}


def truth(boxes, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "labels": np.array(labels)}


def test_box_iou():
    assert box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]])[0, 0] == 1
    assert box_iou([[0, 0, 2, 2]], [[1, 0, 2, 2]])[0, 0] == pytest.approx(2 / 6)  # half of each: 2 of 6
    assert box_iou([[0, 0, 4, 4]], [[1, 1, 2, 2]])[0, 0] == pytest.approx(4 / 16)  # one inside the other
    assert box_iou([[0, 0, 2, 2]], [[2, 0, 2, 2]])[0, 0] == 0  # touching edges
    assert box_iou([[0, 0, 2, 2]], [[5, 5, 1, 1]])[0, 0] == 0
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0  # no area: no IoU, no NaN
    many = box_iou([[0, 0, 2, 2], [1, 0, 2, 2]], [[0, 0, 2, 2], [1, 0, 2, 2], [9, 9, 1, 1]])
    assert many.shape == (2, 3) and many[1, 1] == 1 and many[0, 1] == pytest.approx(1 / 3)


def test_average_precision_by_hand():
    assert average_precision([0.9], [1], 1) == 1.0
    assert average_precision([0.9, 0.8], [0, 1], 1) == pytest.approx(0.5)  # a false positive ranked first
    assert average_precision([0.9, 0.8], [1, 0], 1) == 1.0  # ... ranked after the hit costs nothing
    assert average_precision([0.9], [1], 2) == pytest.approx(0.5)  # half the boxes found
    assert average_precision([], [], 3) == 0.0
    assert np.isnan(average_precision([0.5], [0], 0))  # no ground truth: undefined
    # 3 boxes; ranked hit, miss, hit, miss, hit: precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1
    # interpolated: 1 up to 1/3, 2/3 up to 2/3, 3/5 up to 1
    assert average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1], 3) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # the order is by score, not by position in the lists
    assert average_precision([0.5, 0.9], [1, 0], 1) == pytest.approx(0.5)


def test_mean_average_precision_by_hand():
    a, b = [0, 0, 10, 10], [20, 20, 10, 10]
    perfect, aps = mean_average_precision([detections([a, b], [0.9, 0.8], [0, 1])], [truth([a, b], [0, 1])], 2)
    assert perfect == 1.0 and aps == [1.0, 1.0]
    # the right box with the wrong class: a false positive for one class, a miss for the other
    swapped, _ = mean_average_precision([detections([a], [0.9], [1])], [truth([a], [0])], 2)
    assert swapped == 0.0
    # IoU 0.5 is a hit, just under is not: [0, 0, 10, 10] against [0, 0, 10, 20] is 0.5
    assert mean_average_precision([detections([[0, 0, 10, 20]], [0.9], [0])], [truth([a], [0])], 1)[0] == 1.0
    assert mean_average_precision([detections([[0, 0, 10, 20.5]], [0.9], [0])], [truth([a], [0])], 1)[0] == 0.0
    # a second detection of a found box is a false positive (VOC), ranked after the first here
    twice, _ = mean_average_precision([detections([a, a], [0.9, 0.8], [0, 0])], [truth([a], [0])], 1)
    assert twice == 1.0
    twice_first, _ = mean_average_precision([detections([a, [1, 0, 10, 10]], [0.7, 0.8], [0, 0])],
                                            [truth([a], [0])], 1)
    assert twice_first == 1.0  # the better-scored one takes the box; the other is the false positive after it
    # over images: class 0 found in one image of two, class 1 perfect, class 2 has no ground truth
    m, aps = mean_average_precision(
        [detections([a], [0.9], [0]), detections([b, [40, 40, 5, 5]], [0.8, 0.3], [1, 2])],
        [truth([a], [0]), truth([a, b], [0, 1])], 3)
    assert aps[0] == pytest.approx(0.5) and aps[1] == 1.0 and np.isnan(aps[2]) and m == pytest.approx(0.75)
    # predicting nothing: the baseline
    assert mean_average_precision([detections([], [], [])], [truth([a], [0])], 1)[0] == 0.0


def test_segmentation_scores_by_hand():
    t = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    p = np.array([[0, 1, 1, 1], [0, 0, 0, 2]])
    matrix = confusion(t, p, 3)
    assert matrix.tolist() == [[3, 1, 0], [1, 2, 0], [0, 0, 0]]  # the 255 pixel is left out
    s = segmentation_scores(matrix)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    assert s["iou"][0] == pytest.approx(3 / 5) and s["iou"][1] == pytest.approx(2 / 4) and np.isnan(s["iou"][2])
    assert s["mean_iou"] == pytest.approx((3 / 5 + 2 / 4) / 2)


def random_detections(rng, images: int, classes: int):
    """Scenes of up to 3 true boxes; a detection near each (its class mostly right) and two anywhere."""
    preds, truths = [], []
    for _ in range(images):
        k = int(rng.integers(0, 4))
        boxes = np.column_stack([rng.uniform(0, 50, (k, 2)), rng.uniform(5, 20, (k, 2))])
        labels = rng.integers(0, classes, k)
        near = boxes + rng.normal(0, 2.5, boxes.shape)
        stray = np.column_stack([rng.uniform(0, 50, (2, 2)), rng.uniform(5, 20, (2, 2))])
        found = np.concatenate([near, stray])
        found_labels = np.concatenate([np.where(rng.random(k) < 0.8, labels, rng.integers(0, classes, k)),
                                       rng.integers(0, classes, 2)])
        preds.append(detections(found, rng.random(len(found)), found_labels))
        truths.append(truth(boxes, labels))
    return preds, truths


def test_resampled_map_is_the_map_of_the_resampled_images():
    from augpipe.training.bootstrap import resamples
    from augpipe.training.metrics import ranked_detections, resampled_map

    rng = np.random.default_rng(1)
    preds, truths = random_detections(rng, 15, 3)
    ranked = ranked_detections(preds, truths, 3)
    weights = next(resamples(15, 40, seed=2))
    maps, aps = resampled_map(ranked, weights)
    for w, m, ap in zip(weights, maps, aps):
        drawn = np.repeat(np.arange(15), w.astype(int))  # each image as often as it was drawn
        expected, expected_aps = mean_average_precision([preds[i] for i in drawn], [truths[i] for i in drawn], 3)
        assert m == pytest.approx(expected, abs=1e-12)
        assert np.allclose(ap, expected_aps, equal_nan=True)
    assert len(set(np.round(maps, 6))) > 10  # the draws differ: a check that could fail


def voc_ap(scores, hits, positives: int) -> float:
    """VOC's devkit AP, written out as it computes it: the curve, its envelope, the area."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(hits, float)[order]
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    mrec = np.concatenate([[0.0], tp / positives, [1.0]])
    mpre = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def test_average_precision_is_the_devkits_on_random_rankings():
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = int(rng.integers(1, 30))
        hits = (rng.random(d) < rng.random()).astype(float)
        positives = int(hits.sum() + rng.integers(0 if hits.sum() else 1, 4))
        scores = rng.random(d)
        assert average_precision(scores, hits, positives) == pytest.approx(voc_ap(scores, hits, positives), abs=1e-12)


def test_two_thousand_resampled_maps_of_200_images_with_50_detections_each():
    from augpipe.training.bootstrap import resamples
    from augpipe.training.metrics import ranked_detections, resampled_map

    rng = np.random.default_rng(0)
    preds, truths = [], []
    for _ in range(200):
        boxes, labels = rng.uniform(0, 50, (3, 4)), rng.integers(0, 3, 3)
        found = np.concatenate([boxes + rng.normal(0, 1, boxes.shape), rng.uniform(0, 50, (47, 4))])
        preds.append(detections(found, rng.random(50), np.r_[labels, rng.integers(0, 3, 47)]))
        truths.append(truth(boxes, labels))
    ranked = ranked_detections(preds, truths, 3)
    maps = np.concatenate([resampled_map(ranked, w)[0] for w in resamples(200)])
    assert len(maps) == 2000 and np.all((maps >= 0) & (maps <= 1))
