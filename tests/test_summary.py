"""expand's one-screen summary (augpipe/summary.py): what its class lines count, checked against the
rows of datasets of every kind, and the objects the recipe dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from augpipe.summary import expand_summary
from expanded_kinds import class_counts, dropped, expanded_kinds

OBJECTS = ("coco", "yolo", "voc", "keypoints")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, Path]:
    return expanded_kinds(tmp_path_factory.mktemp("kinds"))


def summary(out: Path) -> list[str]:
    return expand_summary(json.loads((out / "_augpipe.json").read_text()))


def listed(counts: dict, out: Path) -> str:
    """In the dataset's class order, as `inspect` lists them."""
    classes = json.loads((out / "_augpipe.json").read_text())["classes"]
    return ", ".join(f"{c} {counts[c]}" for c in classes if c in counts)


@pytest.mark.parametrize("name, says", [("classification", "rows"), ("segmentation", "rows holding the class")])
def test_the_class_line_counts_the_training_rows_holding_each_class(kinds, name, says):
    rows = class_counts(kinds[name])["train"]["after"]["rows"]
    lines = summary(kinds[name])
    k = next(k for k, line in enumerate(lines) if line.startswith("  classes "))
    assert lines[k] == f"  classes     {listed(rows, kinds[name])}  (train {says})"
    assert not lines[k + 1].startswith("   ")  # one line


@pytest.mark.parametrize("name", OBJECTS)
def test_the_class_lines_of_objects_count_objects_and_the_rows_holding_them(kinds, name):
    train = class_counts(kinds[name])["train"]["after"]
    lines = summary(kinds[name])
    k = next(k for k, line in enumerate(lines) if line.startswith("  classes "))
    assert lines[k] == f"  classes     {listed(train['objects'], kinds[name])}  (train objects)"
    assert lines[k + 1] == f"              {listed(train['rows'], kinds[name])}  (train rows holding the class)"


def test_the_classes_are_listed_in_the_datasets_order_not_the_alphabets(tmp_path):
    """A new user's: the summary listed the classes alphabetically where `inspect` keeps the
    dataset's order (YOLO's names: zebra is class 0)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "health"))
    from test_labels import yolo

    from augpipe import ExpandOptions, expand

    data = yolo(tmp_path / "data", "[zebra, ant]", {f"train/{k}": f"{k % 2} 0.5 0.5 0.2 0.2\n" for k in range(4)})
    expand(data, "flips", tmp_path / "out", ExpandOptions(progress=False, workers=1))
    line = next(line for line in summary(tmp_path / "out") if line.startswith("  classes "))
    objects = class_counts(tmp_path / "out")["train"]["after"]["objects"]
    assert line == f"  classes     zebra {objects['zebra']}, ant {objects['ant']}  (train objects)", line


@pytest.mark.parametrize("name", OBJECTS)
def test_the_objects_the_recipe_dropped_are_shown_by_reason_and_class(kinds, name):
    lost = dropped(kinds[name])
    assert lost  # planted: the recipe shifts objects out of the image
    text = "\n".join(summary(kinds[name]))
    total = sum(lost.values())
    assert f"  dropped     {total} object{'s' * (total != 1)} " in text
    line = re.search(r"\n {16}transforms: (\d+) \((.*)\)", text)
    assert int(line[1]) == total
    assert {c: int(n) for c, n in (part.rsplit(" ", 1) for part in line[2].split(", "))} == lost


def test_inputs_counts_the_images_used_and_the_skipped_apart(tmp_path, folder):
    """A source with a link to a big folder said 'inputs 15,613 images' for 420 (a hostile tester's)."""
    import shutil

    from augpipe import ExpandOptions, expand
    from augpipe.summary import expand_summary

    data = tmp_path / "with-others"
    shutil.copytree(folder, data)
    first = next(p for p in sorted(data.iterdir()) if p.is_dir())
    for k in range(3):
        (first / f"notes{k}.jpg").write_text("not an image")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(progress=False, workers=1))
    used = sum(c["sources"] for c in m["counts"].values())
    line = next(line for line in expand_summary(m) if line.startswith("  inputs"))
    assert line.startswith(f"  inputs      {used:,} images (and 3 entries skipped, below), ")


def test_counts_of_one_are_singular_and_workers_fewer_than_asked_say_why(tmp_path):
    """A new user's: `1 classes`, `1 files`, `1 rows from 1 images`, and `engine local: 1 worker`
    after `-w 2` (one shard to write)."""
    from augpipe import ExpandOptions, expand
    from conftest import write_image

    write_image(tmp_path / "data" / "only" / "a.png")
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(progress=False, workers=2, copies=0,
                                                                           val_fraction=0))
    lines = expand_summary(m)
    assert "  inputs      1 image, 1 class" in lines and "  train       1 row from 1 image" in lines, lines
    assert [line.split(",")[0] for line in lines if line.startswith("  shards")] == ["  shards      1 file"]
    assert "  engine      local: 1 worker (of 2 asked: a worker a shard, 1 to write)" in lines
