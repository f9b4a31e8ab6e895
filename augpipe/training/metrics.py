"""The trainers' scores, in numpy: box IoU, VOC-style average precision, segmentation IoU.

mAP is our own (about sixty lines, unit-tested on hand-made cases) rather than torchmetrics':
torchmetrics' MeanAveragePrecision would pull in pycocotools (or faster-coco-eval) and
lightning-utilities for one number, and its COCO-style 101-point interpolation is not the VOC
all-point AP this sanity check reports.
"""

from __future__ import annotations

import numpy as np


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
    if positives == 0:
        return float("nan")
    scores, hits = np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=np.float64)
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(1 - hits[order])
    recall = tp / positives
    precision = tp / (tp + fp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


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
    scores: list[list[float]] = [[] for _ in range(classes)]
    hits: list[list[float]] = [[] for _ in range(classes)]
    positives = np.zeros(classes, np.int64)
    for pred, truth in zip(predictions, truths):
        t_labels = np.asarray(truth["labels"]).reshape(-1)
        p_labels = np.asarray(pred["labels"]).reshape(-1)
        t_boxes = np.asarray(truth["boxes"], dtype=np.float64).reshape(-1, 4)
        p_boxes = np.asarray(pred["boxes"], dtype=np.float64).reshape(-1, 4)
        p_scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
        for c in range(classes):
            positives[c] += int((t_labels == c).sum())
            mine = p_labels == c
            if mine.any():
                scores[c] += p_scores[mine].tolist()
                hits[c] += match(p_boxes[mine], p_scores[mine], t_boxes[t_labels == c], threshold).tolist()
    aps = [average_precision(scores[c], hits[c], int(positives[c])) for c in range(classes)]
    known = [ap for ap in aps if not np.isnan(ap)]
    return (float(np.mean(known)) if known else 0.0), aps


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
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    known = iou[~np.isnan(iou)]
    total = matrix.sum()
    return {"pixel_acc": float(tp.sum() / total) if total else 0.0, "iou": iou.tolist(),
            "mean_iou": float(known.mean()) if len(known) else 0.0}
