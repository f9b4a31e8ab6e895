"""The contract every target kind implements."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass, field

from augpipe.errors import SkipInput, bad_row


def label_problem(label, classes: int) -> str | None:
    """Why a label or category is not one of `classes` classes (None when it is); a null label is
    one only where there are classes."""
    if label is not None and (isinstance(label, bool) or not isinstance(label, numbers.Real)):
        return f"label {label!r} is not a class index"  # a column rewritten as text
    if isinstance(label, float) and not math.isnan(label) and not label.is_integer():  # 1.5
        return f"label {label!r} is not a class index"  # a column rewritten as floats
    if (label is None and classes == 0) or (label is not None and 0 <= label < classes):
        return None
    return f"label {label}, but the dataset has no classes" if classes == 0 else f"label {label} outside the {classes} classes"


def row_size(row: dict) -> tuple[int, int]:
    """A row's (width, height); a row without one (a null, edited by hand) does not read."""
    size = row.get("width"), row.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise SkipInput(f"the row's size is {size[0]}×{size[1]}, not two positive whole numbers")
    return size


@dataclass
class Audit:
    """One image's labels, judged: what is wrong with them and their figures.

    problems   (check, where, detail): a check of `augpipe.health.base.CHECKS`, where in the file
               ("object 2 (id 5512)", "keypoint 3 of object 0", ""), one line with its figures
    facts      JSON-able: "size" [width, height]; "objects" the count (a classification image:
               1, 0 unlabelled; a mask: the classes it holds past the background 0 and 255);
               "classes" {class name: objects, or 1 for an image's class or a mask's class (a
               value without a name by its number)}; and by kind, "boxes" [[class index, w, h],
               ...] relative to the image's width and height (clipped to it); "mask_pixels" {class
               name or value: pixels}; "keypoints" {"visible": n, "hidden": n, "unlabelled": n}
    signature  its labels in a comparable form (equal for the same labels), None when unlabelled:
               what `health.labels.across` compares for one image content under two labels
    """

    problems: list[tuple[str, str, str]] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    signature: object = None


class Target:
    """What a row carries beside its image, one kind a module of `augpipe.targets`: the module
    defines `KIND`, a subclass of this, and is registered by that alone (`augpipe.targets`
    finds it). An instance is the kind with its per-dataset options (detection: instance masks
    or not). The kind owns its whole life; nothing outside `targets/` and `training/` asks
    which kind it has:

    naming and options
        name                      the kind's name, the manifest's "task" ("classification", ...)
        of_scan(scan), of_manifest(manifest)
                                  classmethods: the kind with a source's or a dataset's options
        variants()                classmethod: `augpipe check --task` choices -> kinds
        manifest_fields()         what the manifest records for the kind, beside "task"
        train_tasks               the `train --task`s a dataset of this kind feeds
    rows
        columns(classes, labelled)   the row's target columns (`augpipe.row.Column`)
        reader_columns()          the columns a torch reader reads beside "image"
        values(state, image)      the row's target columns' values
        count(rows, classes, src) what a shard's `by_class` counts of one source's rows
        counted                   what those counts count, in a word ("rows", "objects")
        row_classes(row, classes) the classes one row holds: {class name: its objects} (1 where the
                                  kind has no objects: classification, segmentation)
        object_classes(state)     the class index of each object a state holds (its drops are counted)
        balancing                 how `--balance` evens classes out (plan.py does the arithmetic):
                                  "class images" (one class an image: every class as many rows as the
                                  largest), "repeat factors" (LVIS repeat-factor sampling over the
                                  classes an image holds), None (refused, `balance_refusal` says why)
        held(src, classes)        what a source holds before augmentation, counted as `count` counts
                                  rows: {class name: objects}; classification: {its class: 1}
        reads_to_balance, read_held(src, extra)
                                  whether `held` needs the source's extra file read first, and the
                                  source with what it read (segmentation: its mask's values)
    sources
        extra_files(src)          other files a source needs (a semantic mask)
        load(src, decoded, extra) the source's target on its decoded image (its state), or SkipInput
        example(width, height)    a made-up state, for the recipe's dry run
    albumentations (a state goes in and comes back)
        albumentations_targets    what the kind hands albumentations (a transform that cannot
                                  carry these is refused)
        compose_options(recipe), compose_transforms(recipe)
                                  `A.Compose`'s extra arguments; the recipe's specs as built
        check_recipe(recipe)      warnings about what the recipe does to this kind's targets
        recipe_fields()           classmethod: top-level recipe keys the kind reads {key: (type, default)}
        for_recipe(recipe)        the kind with what the recipe says of it (its kind_options) applied
        geometry_options()        classmethod: `A.Compose` arguments for EXIF turns and resizes
        target_words              each albumentations target in words, for messages
        audits                    the health checks (CHECKS) only this kind's `audit` makes (boxes
                                  outside the image...): a report names them as checked for it alone
        inputs(state), outputs(result, state)
        moved(state, bbox_params) the state after a step that moved pixels
        spatial                   whether a resize moves the target with the image
    looking at rows
        caption(values, original), draw(rgb, values, classes)
        verify(row, width, height, classes, decode)
                                  what is wrong with a row's target (`inspect --verify`, and export
                                  before it writes); decode=False: no instance mask decoded, only its header read
    health (`augpipe inspect`)
        audit(src, extra, size, classes)
                                  one source image's labels as its format read them, before any
                                  clipping, on the decoded (upright) image's (width, height): an Audit
        audit_row(row, classes)   the same for a row of an expanded dataset
    arrays and torch
        known_classes             the dataset's number of classes (`for_manifest` sets it; None for a
                                  kind made otherwise): a row's label or category outside them is a
                                  damaged row to `arrays` and `torch_targets` (a model would index with it)
        arrays(row)               a row's target as numpy arrays
        from_arrays(arrays, shape), to_arrays(state, shape)   arrays <-> state
        torch_target(arrays, box_format, convention)           arrays as the readers give them
        torch_targets(table, box_format, convention, rows)
                                  a table's rows' `torch_target`s (those at `rows`, in order): the
                                  readers convert the rows they take this way (default: row by row)
        torch_columns(table, box_format, convention)
                                  a table's rows' `torch_target`s laid end to end: ({field: one
                                  tensor}, each row's count, every field's first size), or None
                                  (default: a kind whose targets are not dicts of that form); the
                                  readers gather a batch's from these
        from_user_target(target, shape, box_format, convention)
                                  a user's torch target as arrays, and how to give the result back
        stacked, stacked_array(data)
                                  for a kind whose `torch_target` is one array a row, decoded from a
                                  struct<bytes> column (semantic: the mask): (that column, the
                                  target's numpy dtype), and a stored value's array (any dtype that
                                  casts to it); the readers decode a batch's into one tensor
    """

    name = ""
    albumentations_targets: tuple[str, ...] = ()
    stacked: tuple[str, type] | None = None
    spatial = False
    counted = "rows"
    train_tasks: tuple[str, ...] = ()
    target_words: dict[str, str] = {}
    balancing: str | None = None
    balance_refusal = "--balance needs classes to balance"
    audits: tuple[str, ...] = ()
    known_classes: int | None = None

    @classmethod
    def of_scan(cls, scan) -> Target:
        return cls()

    @classmethod
    def of_manifest(cls, manifest: dict) -> Target:
        return cls()

    @classmethod
    def variants(cls) -> dict[str, Target]:
        return {cls.name: cls()}

    def manifest_fields(self) -> dict:
        return {}

    # ------------------------------------------------------------ rows

    def columns(self, classes: list[str], labelled: bool) -> list:
        raise NotImplementedError

    def reader_columns(self) -> list[str]:
        return [c.name for c in self.columns([], True)]

    def values(self, state, image) -> dict:
        raise NotImplementedError

    def count(self, rows: list[dict], classes, src) -> Counter:
        raise NotImplementedError

    def row_classes(self, row: dict, classes) -> Counter:
        raise NotImplementedError

    def object_classes(self, state) -> list[int]:
        return []

    def held(self, src, classes) -> Counter:
        return Counter()

    reads_to_balance = False

    def read_held(self, src, extra: bytes):
        return src

    # ------------------------------------------------------------ sources

    def extra_files(self, src) -> tuple[str, ...]:
        return ()

    def load(self, src, decoded, extra: bytes | None):
        raise NotImplementedError

    def example(self, width: int, height: int):
        return None

    # ------------------------------------------------------------ albumentations

    def compose_options(self, recipe) -> dict:
        return {}

    def compose_transforms(self, recipe) -> list[dict]:
        return list(recipe.transforms)

    def check_recipe(self, recipe) -> list[str]:
        return []

    @classmethod
    def recipe_fields(cls) -> dict:
        return {}

    def for_recipe(self, recipe) -> Target:
        return self

    @classmethod
    def geometry_options(cls) -> dict:
        return {}

    def inputs(self, state) -> dict:
        return {}

    def outputs(self, result: dict, state):
        return state

    def moved(self, state, bbox_params=None):
        """What derives from the moved targets, derived again (detection: boxes from their masks)."""
        return state

    # ------------------------------------------------------------ looking at rows

    def caption(self, values: dict, original: dict | None) -> str:
        """A row's target for a preview caption; `original` is copy 0's row, if any."""
        return ""

    def draw(self, rgb, values: dict, classes: list[str]):
        return rgb

    def verify(self, row: dict, width: int, height: int, classes: list[str], decode: bool = True) -> list[str]:
        return []

    # ------------------------------------------------------------ health

    def audit(self, src, extra: bytes | None, size: tuple[int, int], classes: list[str]) -> Audit:
        raise NotImplementedError

    def audit_row(self, row: dict, classes: list[str]) -> Audit:
        raise NotImplementedError

    # ------------------------------------------------------------ arrays and torch

    def arrays(self, row: dict) -> dict:
        raise NotImplementedError

    def class_problem(self, label) -> str | None:
        """`label_problem` against the dataset's classes; None when the kind does not know them."""
        return None if self.known_classes is None else label_problem(label, self.known_classes)

    def from_arrays(self, arrays: dict, shape):
        raise NotImplementedError

    def to_arrays(self, state, shape) -> dict:
        raise NotImplementedError

    def torch_target(self, arrays: dict, box_format: str, convention: str):
        raise NotImplementedError

    def torch_targets(self, table, box_format: str, convention: str, rows: list[int] | None = None) -> list:
        """`torch_target` of each row of a pyarrow Table holding `reader_columns()`, or of those at the
        indices `rows`, in order. A kind whose rows convert faster together (columns as arrays once,
        not row by row) overrides it."""
        table = table if rows is None else table.take(rows)
        out = []
        for k, row in enumerate(table.to_pylist()):
            try:
                out.append(self.torch_target(self.arrays(row), box_format, convention))
            except (ValueError, SkipInput) as exc:  # the row's fields do not hold together, or do not decode
                raise bad_row(k if rows is None else rows[k], str(exc)) from None
        return out

    def torch_columns(self, table, box_format: str, convention: str) -> tuple[dict, list[int]] | None:
        return None

    def stacked_array(self, data):
        raise NotImplementedError

    def from_user_target(self, target, shape, box_format: str, convention: str):
        """(arrays, restore): the target in the kind's arrays, and a function from the augmented
        arrays back to the user's layout."""
        raise NotImplementedError
