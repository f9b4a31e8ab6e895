"""Classification with localisation: one object an image, its class and its box.

Two heads on the backbone's feature map: the class (a 1×1 convolution, global average pooling,
cross-entropy) and the box (4 numbers: centre x, centre y, width and height as fractions of the
image, smooth-L1). The box head is a 1×1 convolution too, giving each cell an attention logit and
a box near the cell; the box is the attention-weighted (softmax) average of the cells' boxes
(nets.TaskNet.soft_box). A linear layer on the flattened map, tried first, stalled at a mean IoU
of 0.52 on bench/tasks.py's scenes where this reaches 0.77 in a third of the steps. An image with
several objects is trained on its largest box (by area); one without any is left out (and counted).
Reported: class accuracy, mean IoU and the share of validation images whose predicted box has
IoU ≥ 0.5 with the true one, against always predicting the mean training box and the majority
class.
"""

from __future__ import annotations

import numpy as np

from augpipe.errors import SourceError
from augpipe.training.base import Task, batches, best, image_of
from augpipe.training.bootstrap import mean_scorer
from augpipe.training.boxes import box_sheet, read_boxes, xywh
from augpipe.training.data import Split, normalise, plural
from augpipe.training.metrics import paired_iou

BOX_WEIGHT = 5.0  # the box loss's weight beside cross-entropy
BETA = 0.05  # smooth-L1's switch from squares to absolute values, in fractions of the image


def torch_iou(a, b):
    """Paired IoU of two N×4 tensors of [cx, cy, w, h]."""
    import torch

    a0, a1 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b0, b1 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    wh = (torch.minimum(a1, b1) - torch.maximum(a0, b0)).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


class Localisation(Task):
    name = "localisation"
    headline, headline_text = "val_hit", "validation share with IoU ≥ 0.5"
    min_classes = 1
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("class accuracy", [("train_acc", "train"), ("val_acc", "validation")]),
              ("box", [("train_iou", "train mean IoU"), ("val_iou", "validation mean IoU"),
                       ("val_hit", "validation share with IoU ≥ 0.5", ":")])]
    pictures = ("curves.png", "predictions.png")

    def __init__(self, classes, size, rows):
        super().__init__(classes, size, rows)
        self.counts = {}

    def load(self, ds, split, progress):
        import torch

        found = read_boxes(ds, split, self.size, progress)
        if found is None:
            return None
        x, boxes, labels, (sources, copies, contents) = found
        keep, target_boxes, target_labels, several = [], [], [], 0
        for i, (b, c) in enumerate(zip(boxes, labels)):
            if len(b) == 0:
                continue
            k = int(np.argmax(b[:, 2] * b[:, 3]))
            keep.append(i)
            target_boxes.append([b[k, 0] + b[k, 2] / 2, b[k, 1] + b[k, 3] / 2, b[k, 2], b[k, 3]])
            target_labels.append(int(c[k]))
            several += len(b) > 1
        self.counts[split] = {"rows": len(sources), "without_object": len(sources) - len(keep),
                              "several_objects": several}
        if sources and not keep:
            name = "training" if split == "train" else split
            raise SourceError(f"localisation: none of the {plural(len(sources), f'{name} image')} has an object "
                              "(images without one are left out): nothing to train or score on")
        y = {"labels": torch.tensor(target_labels, dtype=torch.int64),
             "boxes": torch.tensor(np.array(target_boxes, np.float32).reshape(-1, 4))}
        return Split(x[torch.tensor(keep, dtype=torch.int64)], y, [sources[i] for i in keep], [copies[i] for i in keep],
                     [contents[i] for i in keep])

    def prepare(self, train, val, log):
        for split, c in self.counts.items():
            name = "training" if split == "train" else split
            if c["without_object"]:
                log(f"localisation: {plural(c['without_object'], f'{name} image')} without an object left out")
            if c["several_objects"]:
                log(f"localisation: {plural(c['several_objects'], f'{name} image')} with several objects: "
                    f"the largest box of each is the target")

    def loss(self, out, y):
        import torch.nn.functional as F

        cls = F.cross_entropy(out["logits"], y["labels"])
        box = F.smooth_l1_loss(out["box"], y["boxes"], beta=BETA, reduction="none").sum(1).mean()
        return cls + BOX_WEIGHT * box, {"train_acc": (out["logits"].argmax(1) == y["labels"]).sum().item(),
                                        "train_iou": torch_iou(out["box"].detach(), y["boxes"]).sum().item()}

    def predict(self, model, data, device, batch_size):
        """(mean loss, predicted labels, predicted boxes [cx, cy, w, h])"""
        import torch

        model.eval()
        total, labels, boxes = 0.0, [], []
        with torch.no_grad():
            for part in batches(len(data), batch_size):
                out = model(normalise(data.x[part].to(device)))
                y = {k: v[part].to(device) for k, v in data.y.items()}
                total += self.loss(out, y)[0].item() * (part.stop - part.start)
                labels.append(out["logits"].argmax(1).cpu())
                boxes.append(out["box"].cpu())
        return total / len(data), torch.cat(labels).numpy(), torch.cat(boxes).numpy()

    def evaluate(self, model, data, device, batch_size):
        loss, labels, boxes = self.predict(model, data, device, batch_size)
        scores = scores_of(labels, boxes, data.y["labels"].numpy(), data.y["boxes"].numpy())
        return {"val_loss": loss, "val_acc": scores["accuracy"], "val_iou": scores["mean_iou"],
                "val_hit": scores["hit"]}, {"labels": labels, "boxes": boxes}

    def scorer(self, pred, val):
        return mean_scorer(paired_iou(xywh(pred["boxes"]), xywh(val.y["boxes"].numpy())) >= 0.5)

    def epoch_line(self, label, row):
        return (f"{label:>9} epoch {row['epoch']:>3}  train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} "
                f"IoU {row['train_iou']:.3f}  val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
                f"IoU {row['val_iou']:.3f} IoU≥0.5 {row['val_hit']:.3f}  {row['images_per_second']:,.0f} img/s")

    def report(self, pred, val, train, history):
        truth_labels, truth_boxes = val.y["labels"].numpy(), val.y["boxes"].numpy()
        final = scores_of(pred["labels"], pred["boxes"], truth_labels, truth_boxes)
        mean_box = train.y["boxes"].numpy().mean(0)
        majority = int(np.bincount(train.y["labels"].numpy(), minlength=len(self.classes)).argmax())
        baseline = scores_of(np.full(len(val), majority), np.tile(mean_box, (len(val), 1)), truth_labels, truth_boxes)
        top = best(history, "val_hit")
        return {"best_epoch": top["epoch"], "best_val_hit": top["val_hit"], "final": final,
                "baseline": {**baseline, "box": mean_box.tolist(), "class": self.classes[majority]},
                "counts": self.counts}

    def draw(self, out, result, val, pred):
        n = min(len(val), 24)
        truth_labels, truth_boxes = val.y["labels"].numpy(), val.y["boxes"].numpy()
        iou = paired_iou(xywh(pred["boxes"][:n]), xywh(truth_boxes[:n]))
        box_sheet([image_of(val.x[i]) for i in range(n)],
                  [(xywh(truth_boxes[i]), [truth_labels[i]]) for i in range(n)],
                  [(xywh(pred["boxes"][i]), [pred["labels"][i]], [None]) for i in range(n)], self.classes,
                  [f"{self.classes[truth_labels[i]]}: IoU {iou[i]:.2f}" for i in range(n)], out / "predictions.png")


def scores_of(pred_labels, pred_boxes, true_labels, true_boxes) -> dict:
    """accuracy, mean IoU, hit (share with IoU ≥ 0.5) and both (the class right and IoU ≥ 0.5)."""
    iou = paired_iou(xywh(pred_boxes), xywh(true_boxes))
    right = np.asarray(pred_labels) == np.asarray(true_labels)
    return {"accuracy": float(right.mean()), "mean_iou": float(iou.mean()), "hit": float((iou >= 0.5).mean()),
            "both": float(((iou >= 0.5) & right).mean())}


def summary_lines(result: dict) -> list[str]:
    f, b = result["final"], result["baseline"]
    lines = [f"best epoch {result['best_epoch']}: IoU ≥ 0.5 on {result['best_val_hit']:.3f} of validation images "
             f"(final {f['hit']:.3f}); final mean IoU {f['mean_iou']:.3f}, class accuracy {f['accuracy']:.3f}, "
             f"class right and IoU ≥ 0.5 {f['both']:.3f}",
             f"always predicting the mean training box and '{b['class']}' scores: IoU ≥ 0.5 on {b['hit']:.3f}, "
             f"mean IoU {b['mean_iou']:.3f}, class accuracy {b['accuracy']:.3f}"]
    several = result["counts"].get("validation", {}).get("several_objects", 0)
    if several:
        lines.append(f"{plural(several, 'validation image')} with several objects: scored on the largest box")
    return lines
