"""Multi-image steps through `expand`: labels that match the pixels, donors from the training
split recorded in the lineage, the same bytes whatever the worker count, a resume that replays
its donors, and the failures a bad donor makes."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from augpipe import ExpandOptions, expand
from conftest import CLASS_COLOURS, as_if_killed, class_scenes, rows, shard_hashes

QUIET = dict(progress=False, workers=1)
STEPS = {
    "mosaic": "- Mosaic: {p: 1, target_size: [96, 128], cell_shape: [48, 64]}",
    "copypaste": "- CopyPaste: {p: 1, donors: 2}",
    "all": "- Mosaic: {p: 1, target_size: [96, 128], cell_shape: [48, 64]}\n  - CopyPaste: {p: 1}",
}


def _held(n: int = 18) -> list[list[int]]:
    """Cups in most images, cats in some, coins in two, two backgrounds."""
    return [[0] + ([1] if i % 3 == 0 else []) + ([2] if i in (4, 11) else []) if i % 9 else [] for i in range(n)]


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    return class_scenes(tmp_path_factory.mktemp("painted") / "coco", _held())


def _recipe(tmp_path, step: str, top: str = "") -> str:
    path = tmp_path / "mix.yaml"
    path.write_text(f"copies: 3\noutput: {{format: png}}\n{top}transforms:\n  - HorizontalFlip: {{p: 0.5}}\n  {step}\n")
    return str(path)


def _blobs(image: np.ndarray, colour) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, pixels) of each connected patch of a class's colour (within a few levels)."""
    near = (np.abs(image.astype(int) - colour).max(axis=2) <= 8).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=4)
    return [tuple(int(v) for v in stats[k]) for k in range(1, n)]


def _tight(image: np.ndarray, box, colour) -> bool:
    """The colour's pixels in and around the box (a pixel's margin) span the box, to a pixel: the
    box lies on its object, however much of it a pasted object hides."""
    x, y, w, h = box
    x0, y0 = max(int(x) - 1, 0), max(int(y) - 1, 0)
    near = np.abs(image[y0:int(np.ceil(y + h)) + 1, x0:int(np.ceil(x + w)) + 1].astype(int) - colour).max(axis=2) <= 8
    ys, xs = np.nonzero(near)
    if not len(xs):
        return False
    found = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
    return all(abs(a - b) <= 1.01 for a, b in zip(found, (x, y, x + w, y + h)))


def _decoded(row) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_box_lies_on_its_colour_and_every_visible_object_has_its_box(painted, tmp_path, step):
    expand(painted, _recipe(tmp_path, STEPS[step]), tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    checked = 0
    for row in rows(tmp_path / "out"):
        image, objects = _decoded(row), row["objects"]
        boxes = np.asarray(objects["bbox"], float).reshape(-1, 4)
        assert (boxes[:, 2:] > 0).all()
        for box, c in zip(boxes, objects["category"]):
            assert _tight(image, box, CLASS_COLOURS[c]), f"{row['source']} copy {row['copy']}: a {c} box {box} " \
                                                        "is not on its colour"
        for c in range(3):
            colour = np.abs(image.astype(int) - CLASS_COLOURS[c]).max(axis=2) <= 8
            boxed = np.zeros(colour.shape, bool)
            for (x, y, w, h), k in zip(boxes, objects["category"]):
                if k == c:  # a pixel's margin: edges resampled
                    boxed[max(int(y) - 1, 0):int(np.ceil(y + h)) + 1, max(int(x) - 1, 0):int(np.ceil(x + w)) + 1] = True
            for bx, by, bw, bh, pixels in _blobs(image, CLASS_COLOURS[c]):
                if pixels < 12 or min(bw, bh) < 3:
                    continue  # a sliver: min_visibility's to judge
                blob = colour[by:by + bh, bx:bx + bw]
                assert boxed[by:by + bh, bx:bx + bw][blob].all(), \
                    f"{row['source']} copy {row['copy']}: a visible {c} at {bx},{by} has no box"
                checked += 1
    assert checked > 100


def test_donors_are_training_sources_recorded_with_their_content(painted, tmp_path, cli):
    expand(painted, _recipe(tmp_path, STEPS["all"]), tmp_path / "out", ExpandOptions(val_fraction=0.3, **QUIET))
    train = {r["source"]: r["source_sha256"] for r in rows(tmp_path / "out", "train")}
    validation = {r["source"] for r in rows(tmp_path / "out", "validation")}
    assert validation and not validation & set(train)
    used = 0
    for row in rows(tmp_path / "out", "train"):
        for name, params in json.loads(row["transforms"]):
            for donor in params.get("donors", ()):
                assert donor["source"] in train and donor["source"] != row["source"]
                data = (painted / donor["source"]).read_bytes()
                assert donor["sha256"] == hashlib.sha256(data).hexdigest() == train[donor["source"]]
                used += 1
    assert used >= 3 * 4  # a mosaic's three and a paste's one, in every copy
    verified = cli("inspect", tmp_path / "out", "--verify", "--source", painted)
    assert verified.exit_code == 0 and "splits and donors checked, every row and donor against its file" in \
        verified.output


def test_the_same_bytes_with_one_or_two_workers_and_after_a_resume(painted, tmp_path):
    recipe = _recipe(tmp_path, STEPS["all"])
    small = dict(val_fraction=0.2, shard_size=6_000, progress=False)
    expand(painted, recipe, tmp_path / "one", ExpandOptions(workers=1, **small))
    expand(painted, recipe, tmp_path / "two", ExpandOptions(workers=2, **small))
    reference = shard_hashes(tmp_path / "one")
    assert len(reference) > 2 and shard_hashes(tmp_path / "two") == reference
    as_if_killed(tmp_path / "two")
    sorted((tmp_path / "two").glob("train-*.parquet"))[1].unlink()
    m = expand(painted, recipe, tmp_path / "two", ExpandOptions(workers=2, **small))
    assert m["timing"]["shards_resumed"] == len(reference) - 1
    assert shard_hashes(tmp_path / "two") == reference


def test_the_same_bytes_from_and_to_an_object_store(painted, tmp_path, bucket):
    from conftest import s3_hashes, upload

    recipe = _recipe(tmp_path, STEPS["all"])
    small = dict(val_fraction=0.2, shard_size=6_000, progress=False, workers=2)
    expand(painted, recipe, tmp_path / "local", ExpandOptions(**small))
    upload(painted, f"s3://{bucket}/painted")
    expand(f"s3://{bucket}/painted", recipe, f"s3://{bucket}/out", ExpandOptions(**small))
    assert len(shard_hashes(tmp_path / "local")) > 2
    assert s3_hashes(f"s3://{bucket}/out") == shard_hashes(tmp_path / "local")


def test_a_donor_that_cannot_be_used_is_passed_over_for_a_spare(painted, tmp_path):
    """A source found unreadable only as the work reads it (listed as skipped) was still a donor:
    every copy that drew it failed. A copy now takes the next of its step's spares (drawn with its
    own donors, the same on every machine), and the worker count changes no byte."""
    data = tmp_path / "data"
    import shutil

    shutil.copytree(painted, data)
    broken = sorted((data / "default").glob("*.png"))[3]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated PNG: it hashes, then fails to decode
    recipe = _recipe(tmp_path, STEPS["copypaste"])
    m = expand(data, recipe, tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    name = f"default/{broken.name}"
    assert [s["path"] for s in m["skipped"]] == [name] and m["failed_copies"] == []
    made = rows(tmp_path / "out")
    assert len(made) == 17 * 4
    donors = [d["source"] for r in made for _, params in json.loads(r["transforms"]) for d in params.get("donors", ())]
    assert len(donors) == 17 * 3 * 2 and name not in donors
    expand(data, recipe, tmp_path / "two", ExpandOptions(val_fraction=0, progress=False, workers=2))
    assert shard_hashes(tmp_path / "two") == shard_hashes(tmp_path / "out")


def test_a_copy_whose_donors_and_spares_all_fail_fails_with_the_first_reason():
    from augpipe.sample import DonorError, SourceItem, _Donors

    class Reader:
        def load(self, ref):
            if ref.relpath.startswith("bad"):
                raise DonorError(f"its donor {ref.relpath} cannot be used: truncated")
            return ref.relpath

    refs = tuple(SourceItem(name, 0, ()) for name in ("bad1", "good1", "bad2", "good2"))
    assert [*_Donors(Reader(), refs, 2)] == ["good1", "good2"]
    with pytest.raises(DonorError, match="its donor bad1 cannot be used"):
        _Donors(Reader(), refs[:3], 2)[1]


def test_drops_are_counted_by_reason_and_class(painted, tmp_path):
    recipe = _recipe(tmp_path, STEPS["copypaste"].replace("donors: 2", "donors: 4"),
                     top="bbox_params: {min_visibility: 0.9}\n")
    m = expand(painted, recipe, tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    dropped = m["dropped_by"]
    assert dropped and set(dropped) <= {"copypaste: hidden", "copypaste: below min_visibility",
                                        "copypaste: too small", "transforms"}
    assert m["dropped_boxes"] == sum(n for by_class in dropped.values() for n in by_class.values())
    assert set().union(*dropped.values()) <= {"cup", "cat", "coin"}


@pytest.mark.parametrize("task, message", [
    ("classification", "transform 2 Mosaic: works on detection and segmentation datasets, not on a classification "
                       "dataset"),
    ("segmentation", "transform 2 CopyPaste: works on detection datasets, not on a segmentation dataset"),
])
def test_a_step_on_a_kind_it_cannot_carry_is_one_line(tmp_path, task, message, cli):
    step = STEPS["mosaic"] if task == "classification" else STEPS["copypaste"]
    done = cli("check", _recipe(tmp_path, step), "--task", task)
    assert done.exit_code != 0 and message in done.output


def test_a_step_inside_a_compose_is_refused(tmp_path, cli):
    path = tmp_path / "nested.yaml"
    path.write_text("transforms:\n  - OneOf: {transforms: [{Mosaic: {p: 1}}, {HorizontalFlip: {}}]}\n")
    done = cli("check", str(path), "--task", "detection")
    assert done.exit_code != 0
    assert ("transform 1.1 Mosaic: a step that takes other images belongs at the top level of 'transforms', not "
            "inside a compose") in done.output


def _steps_of(row) -> dict:
    return {name: params for name, params in json.loads(row["transforms"])}


def test_a_row_is_never_its_own_donor_nor_one_of_the_same_content(tmp_path):
    one = class_scenes(tmp_path / "one", [[0, 1]])
    recipe = _recipe(tmp_path, "- CopyPaste: {p: 1}\n  - MixUp: {p: 1}\n  - Mosaic: {p: 1, target_size: [96, 128], "
                               "cell_shape: [48, 64]}")
    expand(one, recipe, tmp_path / "out1", ExpandOptions(val_fraction=0, **QUIET))
    for row in rows(tmp_path / "out1"):
        steps = _steps_of(row)
        assert "CopyPaste" not in steps and "MixUp" not in steps  # nothing else to take from
        if row["copy"]:
            assert steps["Mosaic"]["donors"] == []  # the image itself fills the other cells
    same = class_scenes(tmp_path / "same", [[0, 1]] * 3 + [[2]])  # three files of one content
    expand(same, _recipe(tmp_path, "- MixUp: {p: 1}"), tmp_path / "out2", ExpandOptions(val_fraction=0, **QUIET))
    for row in rows(tmp_path / "out2"):
        if row["copy"]:
            donor = _steps_of(row)["MixUp"]["donors"][0]
            assert donor["sha256"] != row["source_sha256"]


def test_no_donor_twice_in_a_row_so_no_object_is_labelled_twice(tmp_path):
    two = class_scenes(tmp_path / "two", [[0, 1], [2, 0]])
    expand(two, _recipe(tmp_path, "- CopyPaste: {p: 1}\n  - MixUp: {p: 1}"), tmp_path / "out",
           ExpandOptions(val_fraction=0, **QUIET))
    for row in rows(tmp_path / "out"):
        boxes = [tuple(b) for b in row["objects"]["bbox"]]
        assert len(boxes) == len(set(boxes)), f"{row['source']} copy {row['copy']}: {boxes}"
        assert "MixUp" not in _steps_of(row)  # its only other image was CopyPaste's already
