"""The health report of an expanded dataset (augpipe/health/expanded.py): `inspect OUT --fail-on` and
`--html` over its rows, against the rows read with pyarrow."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from test_report import _Sources, found, plant, yolo_source

QUIET = dict(progress=False, workers=1)


@pytest.fixture
def expanded(tmp_path):
    data = yolo_source(tmp_path / "data", images=10)
    plant(data)
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(**QUIET))
    return out


def test_the_rows_health_counts_before_and_after_and_finds_the_leak(expanded, cli):
    result = cli("inspect", expanded, "--json", "-q", "--fail-on", "leakage")
    assert result.exit_code == 1
    facts = json.loads(result.output.split("\n--fail-on")[0])
    health = facts["health"]
    assert found(health)["exact_leak"] & {"images/train/im2.jpg", "images/val/leaked.jpg"}
    assert found(health)["dark"] == {"images/train/im3.jpg"}
    objects = {"before": Counter(), "after": Counter()}
    for shard in expanded.glob("*.parquet"):
        for row in pq.read_table(shard, columns=["copy", "objects"]).to_pylist():
            held = Counter(facts["classes"][c] for c in row["objects"]["category"])
            objects["after"] += held
            if row["copy"] == 0:
                objects["before"] += held
    for when, key in (("before", "labels_before"), ("after", "labels")):
        counted = {c: sum(by_split.values()) for c, by_split in health[key]["objects_per_class"].items()}
        assert {c: n for c, n in counted.items() if n} == dict(objects[when])
    assert cli("inspect", expanded, "-q", "--fail-on", "box_outside").exit_code == 0


def test_the_rows_health_page_draws_rows_and_what_augmentation_changed(expanded, cli, tmp_path):
    pytest.importorskip("matplotlib")
    site = tmp_path / "page"
    assert cli("inspect", expanded, "-q", "--html", site).exit_code == 0
    parsed = _Sources()
    parsed.feed((site / "index.html").read_text())
    assert "plots/classes.png" in parsed.images and any(s.startswith("thumbs/") for s in parsed.images)
    for src in parsed.images:
        assert cv2.imread(str(site / src)) is not None, src


@pytest.mark.parametrize("layout", ["folders", "yolo"])
def test_a_class_validation_holds_none_of_is_found_in_the_expanded_rows_as_in_the_source(tmp_path, cli, layout):
    """A new user's: `--fail-on coverage` found a class missing from validation in the source
    and not in the same data expanded ("no problems found", exit 0)."""
    from conftest import write_image
    from test_labels import yolo

    if layout == "yolo":
        data = yolo(tmp_path / "data", "[a, b]", {"train/one": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
                                                  "train/two": "1 0.5 0.5 0.2 0.2\n", "val/three": "0 0.5 0.5 0.2 0.2\n"})
        missing, detail = "b", "occurs in train (2) but not in validation (1 images)"
    else:
        data = tmp_path / "data"
        for split, cls, n in (("train", "a", 3), ("train", "b", 3), ("val", "a", 2)):
            for i in range(n):
                write_image(data / split / cls / f"{cls}{i}.jpg", size=32, seed=len(split) * 100 + ord(cls) * 10 + i)
        missing, detail = "b", "occurs in train (3) but not in validation (2 images)"
    expand(data, "flips", tmp_path / "out", ExpandOptions(**QUIET))
    for where in (data, tmp_path / "out"):
        result = cli("inspect", where, "--json", "-q", "--fail-on", "coverage")
        assert result.exit_code == 1, (where, result.output[-500:])
        problems = json.loads(result.output.split("\n--fail-on")[0])["health"]["problems"] if where != data else \
            json.loads(result.output.split("\n--fail-on")[0])["problems"]
        absent = [p for p in problems if p["check"] == "class_absent"]
        assert [(p["path"], p["split"], p["detail"]) for p in absent] == [(missing, "validation", detail)], absent


def test_a_row_whose_boxes_and_categories_differ_in_number_is_a_problem_not_a_crash(tmp_path, cli):
    """A row edited to 3 boxes and 1 category: --verify said so, the health report (--fail-on,
    --html) ended in IndexError, exit 3 (a hostile tester's)."""
    import pyarrow as pa

    from conftest import make_scenes

    out = tmp_path / "ds"
    expand(make_scenes(tmp_path / "coco", n=6), "flips", out, ExpandOptions(val_fraction=0, workers=1, progress=False))
    shard = sorted(out.glob("train-*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(i for i, r in enumerate(rows) if len(r["objects"]["bbox"]) > 1)
    rows[k]["objects"]["category"] = rows[k]["objects"]["category"][:1]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    manifest = json.loads((out / "_augpipe.json").read_text())  # the checksums re-stamped: only the rows tell
    import hashlib

    for s in manifest["shards"]:
        if s["name"] == shard.name:
            s["sha256"], s["bytes"] = hashlib.sha256(shard.read_bytes()).hexdigest(), shard.stat().st_size
    (out / "_augpipe.json").write_text(json.dumps(manifest))
    result = cli("inspect", out, "-q", "--fail-on", "all", "--json")
    assert result.exit_code == 1, result.output
    found = [p for p in json.loads(result.stdout)["health"]["problems"] if p["check"] == "annotation_unreadable"]
    assert found and "boxes but 1 categories" in found[0]["detail"], found


def test_an_expanded_dataset_without_a_validation_split_fails_coverage(tmp_path, cli):
    """A new user's: `inspect OUT --fail-on coverage` said nothing of a dataset with no validation
    split (augpipe's trainers refuse one)."""
    from conftest import make_scenes

    scenes = make_scenes(tmp_path / "coco", n=6)
    expand(scenes, "flips", tmp_path / "none", ExpandOptions(val_fraction=0, **QUIET))
    expand(scenes, "flips", tmp_path / "half", ExpandOptions(val_fraction=0.5, **QUIET))
    assert {s["split"] for s in json.loads((tmp_path / "half" / "_augpipe.json").read_text())["shards"]} == {
        "train", "validation"}
    result = cli("inspect", tmp_path / "none", "--json", "-q", "--fail-on", "coverage")
    assert result.exit_code == 1, result.output[-500:]
    problems = json.loads(result.stdout)["health"]["problems"]
    assert [(p["check"], p["path"]) for p in problems if p["group"] == "coverage"] == [("no_validation", "validation")]
    assert "only train" in problems[0]["detail"] or any("only train" in p["detail"] for p in problems)
    said = cli("inspect", tmp_path / "none", "-q", "--fail-on", "no_validation")
    assert said.exit_code == 1 and "no validation split: 1  [no_validation]" in said.output, said.output
    assert "no_validation" not in cli("inspect", tmp_path / "half", "--json", "-q", "--fail-on", "coverage").stdout


def test_the_image_size_plot_has_a_pixel_axis_whose_labels_do_not_run_together():
    """A new user's: a label a bin ('156-173', '173-190', ...) ran together into one smear."""
    pytest.importorskip("matplotlib")
    import numpy as np

    from augpipe.health.plots import close, image_sizes

    sides = np.random.default_rng(0).integers(150, 500, 84)
    counts, edges = np.histogram(sides, bins=20)
    fig = image_sizes({"pictures": {"long_sides": {"edges": edges.round(1).tolist(), "counts": counts.tolist()}}})
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
        assert len(boxes) >= 3 and all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
        assert [float(t.get_text().replace("−", "-")) for t in labels] == sorted(t.get_position()[0] for t in labels)
        assert sum(p.get_height() for p in ax.patches) == 84
    finally:
        close(fig)


def test_the_page_names_as_checked_only_what_was_checked(expanded, tmp_path, cli):
    """A new user's: a classification set's page said its boxes, masks and keypoints were checked
    and clean; a source's, that its validation split was."""
    import re

    from conftest import make_folder

    def checked(where) -> str:
        site = tmp_path / f"page-{len(list(tmp_path.glob('page-*')))}"
        assert cli("inspect", where, "-q", "--html", site).exit_code == 0
        return re.search(r"Checked, nothing found: ([^<]*)", (site / "index.html").read_text())[1]

    folder = make_folder(tmp_path / "cls", per_class=4)
    source = checked(folder)
    assert "images without labels" in source and not re.search("box|mask|keypoint|validation split", source), source
    expand(folder, "flips", tmp_path / "cls-x", ExpandOptions(val_fraction=0.5, **QUIET))
    rows = checked(tmp_path / "cls-x")
    assert "no validation split" in rows and not re.search("box|mask|keypoint", rows), rows
    boxes = checked(expanded)
    assert "tiny boxes" in boxes and "keypoint" not in boxes and "masks with values" not in boxes, boxes
