"""Targets: what a row carries beside its image, one kind a task.

Each kind owns its whole life (the albumentations `composition.py` processor, per target):
its columns, how it is loaded and checked against the decoded image, how it goes through
albumentations and back, how it is written to a row, drawn on a preview and verified.

    classification  a class label          `label`
    detection       boxes (+ instance masks) `objects`
    segmentation    a semantic mask        `annotation`
"""

from __future__ import annotations

import importlib

TASKS = ("classification", "detection", "segmentation")
_MODULES = {"classification": "label", "detection": "boxes", "segmentation": "semantic"}


class Target:
    """The interface every kind implements (see label.py for the smallest)."""

    task = ""
    # what the kind hands albumentations: a transform that cannot carry these is refused
    albumentations_targets: tuple[str, ...] = ()

    def columns(self, classes: list[str], labelled: bool) -> list:
        raise NotImplementedError

    def compose_options(self, recipe) -> dict:
        """Extra `A.Compose` arguments (bbox_params, mask_interpolation)."""
        return {}

    def load(self, src, rgb, extra: bytes | None):
        """The source's target on its decoded image (orientation applied), or SkipInput."""
        raise NotImplementedError

    def example(self, width: int, height: int):
        """A made-up target on a width×height test image, for the recipe's dry run."""
        return None

    def inputs(self, state) -> dict:
        return {}

    def outputs(self, result: dict, state):
        return state

    def moved(self, state, bbox_params=None):
        """The state after a step that moved pixels (a spatial transform, a resize): what derives
        from the moved targets, derived again (detection: boxes from their masks)."""
        return state

    def values(self, state, image) -> dict:
        raise NotImplementedError

    def caption(self, values: dict, original: dict | None) -> str:
        """What a row's target is, for a preview caption; `original` is copy 0's row, if any."""
        return ""

    def draw(self, rgb, values: dict, classes: list[str]):
        return rgb

    def verify(self, row: dict, width: int, height: int, classes: list[str]) -> list[str]:
        return []

    def arrays(self, row: dict) -> dict:
        """A row's target as numpy arrays, for readers and trainers."""
        raise NotImplementedError


_KINDS: dict[tuple, Target] = {}


def for_manifest(manifest: dict) -> Target:
    """A dataset's target kind, from its manifest: the one place it is derived."""
    task = manifest.get("task", "classification")
    return kind_for(task, bool(manifest.get("instance_masks", False)),
                    len(manifest.get("classes", ())) if task == "segmentation" else 0)


def for_scan(scan) -> Target:
    """A source's target kind, from its scan (detection: instance masks when any object has one)."""
    masks = scan.task == "detection" and any(
        f.target is not None and f.target.segments and any(s is not None for s in f.target.segments)
        for f in scan.files)
    return kind_for(scan.task, masks, len(scan.classes) if scan.task == "segmentation" else 0)


def kind_for(task: str, instance_masks: bool = False, classes: int = 0) -> Target:
    """The target kind of a task with its per-dataset options (detection: instance masks or not;
    segmentation: the number of named classes, 0 when the mask values are all there is),
    created once per process."""
    key = (task, instance_masks, classes)
    if key not in _KINDS:
        if task not in _MODULES:
            raise ValueError(f"unknown task {task!r}: one of {', '.join(TASKS)}")
        cls = importlib.import_module(f"augpipe.targets.{_MODULES[task]}").KIND
        _KINDS[key] = cls(instance_masks) if task == "detection" else cls(classes) if task == "segmentation" else cls()
    return _KINDS[key]
