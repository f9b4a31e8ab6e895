"""The health report of an expanded dataset (`augpipe inspect OUT --html DIR` or `--fail-on`):
what `inspect OUT` says of it (inspection.py: its rows, and each class before and after
augmentation), and the same checks as a source's over its rows: each row's target audited by its
kind (`audit_row`), the label figures of the originals (before) and of every row (after), and the
originals' pixels measured and judged (`health.images`): the splits expand made, leak-checked by
content and by look.

facts["health"]: labels_before, labels (health.labels.summarise), pictures (health.images.facts),
problems [Problem.as_dict()]: a row is named by its source, and an augmented one `SOURCE copy N`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from augpipe.health.base import Problem
from augpipe.inspection import target_columns


@dataclass(frozen=True)
class DatasetHealth:
    facts: dict
    ds: Any

    def page(self) -> dict:
        """What the --html page shows: its overview lines, problems, the plots' facts, the skips."""
        from augpipe.inspection import output_report

        f, h = self.facts, self.facts["health"]
        figures = {"task": f["task"], "class_names": f["classes"], "labels": h["labels"],
                   "labels_before": h["labels_before"], "pictures": h["pictures"], "dropped_by": f["dropped_by"]}
        return {"path": f["path"], "overview": output_report(f)[:3], "problems": h["problems"], "figures": figures,
                "skipped": f["skipped"], "unasked": () if self.ds.manifest.labelled else ("no_validation",)}

    def picture(self, name: str, k: int | None = None):
        """A row's image with its target drawn, object k ringed; None when no row has that name."""
        from augpipe.health.drawing import row_picture

        source, copy = split_name(name)
        columns = ["image", "copy", "source", "width", "height", *target_columns(self.ds)]
        for split in self.ds.splits():
            for batch in self.ds.iter_batches(split, columns, where=("source", [source])):
                row = next((r for r in batch.to_pylist() if r["copy"] == copy), None)
                if row is not None:
                    return row_picture(self.ds.kind, row, self.ds.classes, k)
        return None


def row_name(row: dict) -> str:
    return row["source"] if row["copy"] == 0 else f"{row['source']} copy {row['copy']}"


def split_name(name: str) -> tuple[str, int]:
    source, mark, copy = name.rpartition(" copy ")
    return (source, int(copy)) if mark and copy.isdigit() else (name, 0)


def dataset_health(location, verify: bool = False, source: str | None = None, progress: bool = True) -> DatasetHealth:
    from augpipe.dataset import open_dataset
    from augpipe.health import _ordered, images, labels
    from augpipe.inspection import inspect_output

    facts = inspect_output(location, verify=verify, source=source, progress=progress)
    ds = open_dataset(location)
    before, after, stats, problems = _read_rows(ds, progress)
    judged = images.judge(stats)
    classes = ds.classes if ds.manifest.labelled else []
    problems += labels.coverage(before, classes, ds.kind)
    problems += labels.validation(ds.splits()) if classes else []
    facts["health"] = {
        "labels_before": labels.summarise(before, classes),
        "labels": labels.summarise(after, classes),
        "pictures": images.facts(stats, judged),
        "problems": [p.as_dict() for p in _ordered(problems + judged)],
    }
    return DatasetHealth(facts, ds)


class _Rows:
    """What the pass over the rows gathers: each row's audit (the originals' apart), the
    originals' image figures, and the problems."""

    def __init__(self, ds):
        self.kind, self.classes = ds.kind, ds.classes if ds.manifest.labelled else []
        self.before, self.after, self.stats, self.problems = [], [], [], []

    def add(self, split: str, row: dict) -> None:
        from augpipe.errors import SkipInput

        name = row_name(row)
        try:
            audit = self.kind.audit_row(row, self.classes)
        except SkipInput as exc:
            self.problems.append(Problem("annotation_unreadable", name, detail=exc.reason, split=split))
            return
        self.problems += [Problem(c, name, w, d, split) for c, w, d in audit.problems]
        self.after.append((split, audit))
        if row["copy"] == 0:
            self.before.append((split, audit))
            self._measure(split, name, (row["image"] or {}).get("bytes") or b"")

    def _measure(self, split: str, name: str, data: bytes) -> None:
        from augpipe.decode import row_image
        from augpipe.health import images

        try:
            self.stats.append(images.measure(name, split, data, row_image(data)))
        except ValueError:
            self.problems.append(Problem("unreadable_image", name, detail="does not decode", split=split))


def _read_rows(ds, progress: bool):
    """Every row audited by its kind; the originals' pixels measured."""
    from augpipe.errors import SourceError
    from augpipe.inspection import rows_bar

    rows = _Rows(ds)
    columns = ["image", "copy", "source", "width", "height", *target_columns(ds)]
    with rows_bar(ds, "health", progress) as bar:
        for split in ds.splits():
            try:
                for batch in ds.iter_batches(split, columns):
                    for row in batch.to_pylist():
                        rows.add(split, row)
                    bar.update(batch.num_rows)
            except SourceError:  # a shard that does not read: inspect --verify lists it
                continue
    return rows.before, rows.after, rows.stats, rows.problems
