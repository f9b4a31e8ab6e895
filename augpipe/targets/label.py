"""Classification: one class label a row (`label`, a Hugging Face ClassLabel)."""

from __future__ import annotations

from collections import Counter

from augpipe.row import label_column
from augpipe.targets.base import Target


class Label(Target):
    name = "classification"
    train_tasks = ("classification",)
    balancing = "class images"

    def manifest_fields(self) -> dict:
        return {"instance_masks": False}  # what every 0.3 manifest records

    def columns(self, classes, labelled):
        return [label_column(classes, labelled)]

    def load(self, src, rgb, extra):
        return src.label

    def values(self, state, image) -> dict:
        return {"label": state}

    def count(self, rows, classes, src) -> Counter:
        return Counter({classes[src.label] if src.label is not None else "(unlabelled)": len(rows)})

    def row_classes(self, row, classes) -> Counter:
        label = row.get("label")
        return Counter({classes[label] if label is not None and 0 <= label < len(classes) else str(label): 1})

    def held(self, src, classes) -> Counter:
        return Counter({src.class_name: 1})

    def verify(self, row, width, height, classes):
        label = row.get("label")
        if classes and (label is None or not 0 <= label < len(classes)):
            return [f"label {label} outside the {len(classes)} classes"]
        return []

    def arrays(self, row):
        return {"label": -1 if row.get("label") is None else int(row["label"])}

    def from_arrays(self, arrays, shape):
        return arrays["label"]

    def to_arrays(self, state, shape) -> dict:
        return {"label": state}

    def torch_target(self, arrays, box_format, convention):
        """The label, an int (-1 when unlabelled)."""
        return arrays["label"]

    def from_user_target(self, target, shape, box_format, convention):
        return {"label": target}, lambda a: a["label"]


KIND = Label
