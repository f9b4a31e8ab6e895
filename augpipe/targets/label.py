"""Classification: one class label a row (`label`, a Hugging Face ClassLabel)."""

from __future__ import annotations

from collections import Counter

from augpipe.errors import bad_row
from augpipe.row import label_column
from augpipe.targets.base import Audit, Target, label_problem, row_size


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

    def verify(self, row, width, height, classes, decode=True):
        why = label_problem(row.get("label"), len(classes))
        return [why] if why else []

    def audit(self, src, extra, size, classes) -> Audit:
        """Its class (classification: the folder or label file gave it; None when unlabelled)."""
        return _audit(src.class_name, classes, size)

    def audit_row(self, row, classes) -> Audit:
        label = row.get("label")
        name = None if label is None else classes[label] if 0 <= label < len(classes) else f"class {label}"
        return _audit(name, classes, row_size(row))

    def arrays(self, row):
        if why := self.class_problem(row.get("label")):
            raise ValueError(why)
        return {"label": -1 if row.get("label") is None else int(row["label"])}

    def from_arrays(self, arrays, shape):
        return arrays["label"]

    def to_arrays(self, state, shape) -> dict:
        return {"label": state}

    def torch_target(self, arrays, box_format, convention):
        """The label, an int (-1 when unlabelled)."""
        return arrays["label"]

    def torch_targets(self, table, box_format, convention, rows=None):
        """`torch_target` of each row, from the label column as a whole."""
        stored = table.column("label").to_pylist()
        picked = range(len(stored)) if rows is None else rows
        if self.known_classes is not None:  # a stored -1 is no class either: not unlabelled
            bad = next((i for i in picked if self.class_problem(stored[i])), None)
            if bad is not None:
                raise bad_row(bad, self.class_problem(stored[bad]))
        labels = [-1 if label is None else int(label) for label in stored]  # a float column's 1.0: 1
        return labels if rows is None else [labels[i] for i in rows]

    def from_user_target(self, target, shape, box_format, convention):
        return {"label": target}, lambda a: a["label"]


def _audit(name: str | None, classes: list[str], size) -> Audit:
    problems = [] if name is None or name in classes else [("unknown_class", "", f"{name}: not one of the "
                                                                                f"{len(classes)} classes")]
    facts = {"size": [int(size[0]), int(size[1])], "objects": 0 if name is None else 1,
             "classes": {} if name is None else {name: 1}}
    return Audit(problems, facts, name)


KIND = Label
