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
