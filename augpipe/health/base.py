"""The contract of a health check: what a problem is, and every check by name.

`augpipe inspect` reads a source (or an expanded dataset) once and asks three parts what is wrong:
the target kind (`Target.audit`: one image's labels), `health.labels` (labels across files) and
`health.images` (pixels, sizes and duplicates). Each answers with `Problem`s naming a check of
CHECKS; the report counts them by check and group, and `--fail-on` names groups or checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    group: str  # labels | coverage | images | duplicates | leakage
    title: str  # plural words for the report's line: "boxes outside the image"


CHECKS: dict[str, Check] = {
    # labels: what would train the model on wrong targets
    "annotation_unreadable": Check("labels", "annotation files unreadable or not matching their image"),
    "unknown_class": Check("labels", "labels with an unknown class id"),
    "box_outside": Check("labels", "boxes outside the image"),
    "box_degenerate": Check("labels", "boxes of zero or negative size"),
    "box_tiny": Check("labels", "tiny boxes"),
    "box_duplicate": Check("labels", "duplicate boxes (same class, IoU > 0.9)"),
    "mask_values": Check("labels", "masks with values outside the classes"),
    "keypoint_outside": Check("labels", "labelled keypoints outside the image"),
    "conflicting_labels": Check("labels", "images under two labels"),
    # coverage: what the labels leave out
    "no_labels": Check("coverage", "images without labels"),
    "class_absent": Check("coverage", "classes that never occur, or not in every split"),
    "no_validation": Check("coverage", "no validation split"),
    # images: the pixels
    "unreadable_image": Check("images", "images that do not decode"),
    "blurry": Check("images", "blurry images"),
    "dark": Check("images", "too dark images"),
    "bright": Check("images", "too bright images"),
    "low_information": Check("images", "low-information (near-constant) images"),
    "odd_size": Check("images", "images of an unusual size"),
    "odd_aspect": Check("images", "images of an unusual aspect ratio"),
    "grayscale": Check("images", "grayscale images among colour ones"),
    "exif_rotated": Check("images", "images turned by their EXIF orientation"),
    # duplicates within a split, and leakage: the same content in two splits
    "exact_duplicate": Check("duplicates", "exact duplicates within a split (or not split yet)"),
    "near_duplicate": Check("duplicates", "near duplicates within a split (or not split yet)"),
    "exact_leak": Check("leakage", "exact duplicates across splits"),
    "near_leak": Check("leakage", "near duplicates across splits"),
}

GROUPS = ("labels", "coverage", "images", "duplicates", "leakage")


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is: a file (an image's path relative to the source, or an
    annotation file's), and within it a line, an object or an annotation id."""

    check: str  # a key of CHECKS
    path: str
    where: str = ""  # "line 3", "object 2 (id 5512)", ... ; "" for the whole file
    detail: str = ""  # one line, with its figures: "box [-4.0, 10.0, 30.0, 20.0] over the left edge by 4 px"
    split: str | None = None
    related: tuple[str, ...] = ()  # the other files of a duplicate, leak or conflicting-label group

    def __post_init__(self):
        if self.check not in CHECKS:
            raise ValueError(f"unknown health check {self.check!r}")

    @property
    def group(self) -> str:
        return CHECKS[self.check].group

    def line(self) -> str:
        where = f" {self.where}" if self.where else ""
        others = f" (= {', '.join(self.related)})" if self.related else ""
        return f"{self.path}{where}: {self.detail or CHECKS[self.check].title}{others}"

    def as_dict(self) -> dict:
        return {**asdict(self), "related": list(self.related), "group": self.group}
