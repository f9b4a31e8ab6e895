"""Classification: one class label a row (`label`, a Hugging Face ClassLabel)."""

from __future__ import annotations

from augpipe.row import label_column
from augpipe.targets import Target


class Label(Target):
    task = "classification"

    def columns(self, classes, labelled):
        return [label_column(classes, labelled)]

    def load(self, src, rgb, extra):
        return src.label

    def values(self, state, image) -> dict:
        return {"label": state}

    def verify(self, row, width, height, classes):
        label = row.get("label")
        if classes and (label is None or not 0 <= label < len(classes)):
            return [f"label {label} outside the {len(classes)} classes"]
        return []


    def arrays(self, row):
        return {"label": -1 if row.get("label") is None else int(row["label"])}


KIND = Label
