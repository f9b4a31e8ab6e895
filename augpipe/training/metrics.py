"""The trainers' scores, in numpy: box IoU, VOC-style average precision, segmentation IoU.

mAP is our own (about sixty lines, unit-tested on hand-made cases) rather than torchmetrics':
torchmetrics' MeanAveragePrecision would pull in pycocotools (or faster-coco-eval) and
lightning-utilities for one number, and its COCO-style 101-point interpolation is not the VOC
all-point AP this sanity check reports.
"""

from __future__ import annotations

import numpy as np

CELLS = 1 << 22  # the most resamples × true positives held at once (32 MiB of float64)


def box_iou(a, b) -> np.ndarray:
    """IoU of every box in `a` (N×4) with every box in `b` (M×4), both [x, y, w, h]: N×M.
    A box of no area has IoU 0 with everything."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = np.clip(a[:, 2:3], 0, None) * np.clip(a[:, 3:4], 0, None) + \
        np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def paired_iou(a, b) -> np.ndarray:
    """IoU of a[i] with b[i]: N."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.array([box_iou(x, y)[0, 0] for x, y in zip(a, b)]) if len(a) else np.zeros(0)


def average_precision(scores, hits, positives: int) -> float:
    """VOC's all-point interpolated AP (VOC 2010 on): the area under the precision-recall curve
    after each precision is raised to the best precision at any higher recall.

    `scores` and `hits` (1 a true positive, 0 a false one) are a class's detections over all
    images; `positives` its ground-truth boxes. No ground truth: NaN (the class is left out of the mean)."""
    hits = np.asarray(hits, dtype=np.float64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ones = np.ones((1, len(hits)))
    return float(weighted_average_precision(ones, np.arange(len(hits)), hits[order], np.array([positives]))[0])


def weighted_average_precision(weights, images, hits, positives) -> np.ndarray:
    """average_precision under B weightings of N images at once: `hits` (D) a class's detections
    already ranked by falling score, `images` (D) the image of each, `weights` (B×N) how often each
    image counts (in a resample), `positives` (B) the class's true boxes under each weighting.
    NaN where there are no positives.

    Counting a detection k times is the same as k copies of it. Only the true positives' points
    matter: a false positive gains no recall and its precision is below the point before it, so it
    never raises an envelope; each true positive needs only the weight of the false positives
    ranked before it, summed a stretch between true positives at a time (a sparse product: the
    cost is resamples × true positives, not resamples × detections)."""
    from scipy import sparse

    weights, hits = np.asarray(weights, dtype=np.float64), np.asarray(hits).astype(bool)
    images, positives = np.asarray(images, dtype=np.int64), np.asarray(positives, dtype=np.float64)
    found, before = images[hits], np.cumsum(hits)[~hits]  # each false positive: the true ones ranked before it
    counted = before < len(found)  # those after the last true positive lower no point that counts
    stretches = sparse.csr_matrix((np.ones(int(counted.sum())), (before[counted], images[~hits][counted])),
                                  shape=(len(found), weights.shape[1]))
    out = np.full(len(weights), np.nan)
    step = max(1, CELLS // max(1, len(found)))
    for start in range(0, len(weights), step):
        w, pos = weights[start:start + step], positives[start:start + step]
        own = w[:, found]
        tp, fp = np.cumsum(own, axis=1), np.cumsum((stretches @ w.T).T, axis=1)
        precision = np.where(tp > 0, tp / np.where(tp > 0, tp + fp, 1), 0.0)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        area = (own * envelope).sum(1) / np.where(pos > 0, pos, 1)
        out[start:start + step] = np.where(pos > 0, area, np.nan)
    return out


def match(pred_boxes, pred_scores, true_boxes, threshold: float = 0.5) -> np.ndarray:
    """VOC's matching in one image and class: detections by falling score each take the true box
    they overlap most; a hit when that IoU ≥ threshold and the box is not taken yet, else a false
    positive (a second detection of a taken box included). 1/0 per detection, in the given order."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    hits = np.zeros(len(pred_boxes))
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return hits
    iou = box_iou(pred_boxes, true_boxes)
    taken = np.zeros(iou.shape[1], bool)
    for i in np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable"):
        j = int(iou[i].argmax())
        if iou[i, j] >= threshold and not taken[j]:
            hits[i], taken[j] = 1, True
    return hits


def mean_average_precision(predictions: list[dict], truths: list[dict], classes: int,
                           threshold: float = 0.5) -> tuple[float, list[float]]:
    """(mAP, AP per class) at one IoU threshold over a set of images.

    predictions[i]: {"boxes" K×4, "scores" K, "labels" K}; truths[i]: {"boxes" M×4, "labels" M},
    boxes [x, y, w, h] in one coordinate system. The mean is over the classes that have ground
    truth (a class without any is NaN in the list and left out); no class with ground truth: 0."""
    ranked = ranked_detections(predictions, truths, classes, threshold)
    maps, aps = resampled_map(ranked, np.ones((1, len(truths))))
    return float(maps[0]), aps[0].tolist()


def ranked_detections(predictions: list[dict], truths: list[dict], classes: int,
                      threshold: float = 0.5) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """What mAP needs, per image: for each class its detections over all images ranked by falling
    score, as (their images' indices, hit 1/0), and the true boxes of each class in each image
    (N×classes). Matching is within an image, so a resample of the images reuses it."""
    found: list[list[tuple]] = [[] for _ in range(classes)]  # (scores, hits, image) an image a class
    positives = np.zeros((len(truths), classes), np.int64)
    for i, (pred, truth) in enumerate(zip(predictions, truths)):
        t_labels = np.asarray(truth["labels"]).reshape(-1)
        p_labels = np.asarray(pred["labels"]).reshape(-1)
        t_boxes = np.asarray(truth["boxes"], dtype=np.float64).reshape(-1, 4)
        p_boxes = np.asarray(pred["boxes"], dtype=np.float64).reshape(-1, 4)
        p_scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
        positives[i] = [int((t_labels == c).sum()) for c in range(classes)]
        for c in np.unique(p_labels[(p_labels >= 0) & (p_labels < classes)]).astype(np.int64):
            mine = p_labels == c
            found[c].append((p_scores[mine], match(p_boxes[mine], p_scores[mine], t_boxes[t_labels == c], threshold), i))
    ranked = []
    for per_image in found:
        scores = np.concatenate([s for s, _, _ in per_image]) if per_image else np.zeros(0)
        hits = np.concatenate([h for _, h, _ in per_image]) if per_image else np.zeros(0)
        images = np.concatenate([np.full(len(s), i) for s, _, i in per_image]) if per_image else np.zeros(0, np.int64)
        order = np.argsort(-scores, kind="stable")
        ranked.append((images[order].astype(np.int64), hits[order]))
    return ranked, positives


def resampled_map(ranked: tuple, weights) -> tuple[np.ndarray, np.ndarray]:
    """(mAP B, AP B×classes) of ranked_detections' result under B weightings of its N images
    (B×N: each image's count in a resample)."""
    detections, positives = ranked
    weights = np.asarray(weights, dtype=np.float64)
    counts = weights @ positives
    aps = np.stack([weighted_average_precision(weights, images, hits, counts[:, c])
                    for c, (images, hits) in enumerate(detections)], axis=1) if detections else np.zeros((len(weights), 0))
    return mean_of_known(aps), aps


def confusion(truth: np.ndarray, pred: np.ndarray, classes: int, ignore: int = 255) -> np.ndarray:
    """classes×classes pixel counts, rows true, columns predicted; `ignore` pixels left out."""
    truth, pred = np.asarray(truth).reshape(-1), np.asarray(pred).reshape(-1)
    keep = truth != ignore
    return np.bincount(truth[keep].astype(np.int64) * classes + pred[keep].astype(np.int64),
                       minlength=classes * classes).reshape(classes, classes)


def segmentation_scores(matrix: np.ndarray) -> dict:
    """Pixel accuracy, IoU per class (TP / (TP + FP + FN); NaN for a class in neither truth nor
    prediction) and their mean over the classes that have one."""
    matrix = np.asarray(matrix, dtype=np.float64)
    iou = class_iou(matrix)
    total = matrix.sum()
    return {"pixel_acc": float(np.trace(matrix) / total) if total else 0.0, "iou": iou.tolist(),
            "mean_iou": float(mean_of_known(iou))}


def class_iou(matrices) -> np.ndarray:
    """IoU per class of confusion matrices (…×C×C, rows true): …×C, NaN for a class in neither."""
    matrices = np.asarray(matrices, dtype=np.float64)
    tp = np.diagonal(matrices, axis1=-2, axis2=-1)
    union = matrices.sum(-2) + matrices.sum(-1) - tp
    return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_of_known(values) -> np.ndarray:
    """The mean over the last axis of the values that are not NaN; 0 where all are."""
    values = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(values)
    count = known.sum(-1)
    return np.where(count > 0, np.where(known, values, 0).sum(-1) / np.maximum(count, 1), 0.0)
