"""`augpipe inspect SOURCE`: the health report end to end from the CLI (augpipe/health/__init__.py,
report.py, html.py): planted problems found in the text, --json, --fail-on and --html."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from planted_images import varied


def yolo_source(root: Path, images: int = 8) -> Path:
    """A clean YOLO dataset: varied pictures, each with one box of class 0 or 1."""
    rng = np.random.default_rng(0)
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: images/train\nval: images/val\n")
    for k in range(images):
        split = "train" if k < images - 2 else "val"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / split / f"im{k}.jpg"), cv2.cvtColor(varied(rng, 96, 80), cv2.COLOR_RGB2BGR))
        label = root / "labels" / split / f"im{k}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"{k % 2} 0.37 0.37 0.25 0.25\n")
    return root


def plant(root: Path) -> None:
    """A box off the image, an unknown class, a box twice, a train image again in val, a dark image."""
    (root / "labels/train/im0.txt").write_text("0 0.37 0.37 0.25 0.25\n1 1.2 0.5 0.2 0.2\n")
    (root / "labels/train/im1.txt").write_text("7 0.37 0.37 0.25 0.25\n")
    shutil.copy(root / "images/train/im2.jpg", root / "images/val/leaked.jpg")
    shutil.copy(root / "labels/train/im2.txt", root / "labels/val/leaked.txt")
    (root / "labels/train/im4.txt").write_text("\n1 0.37 0.37 0.25 0.25\n1 0.37 0.37 0.25 0.25\n")  # one box twice
    dark = (cv2.imread(str(root / "images/train/im3.jpg")) * 0.04).astype(np.uint8)
    cv2.imwrite(str(root / "images/train/im3.jpg"), dark)


def found(facts: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in facts["problems"]:
        out.setdefault(p["check"], set()).add(p["path"])
    return out


def test_planted_problems_are_found_and_a_clean_source_has_none(tmp_path, cli):
    clean = yolo_source(tmp_path / "clean")
    result = cli("inspect", clean, "--json", "-q", "--fail-on", "all")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["problems"] == []
    data = yolo_source(tmp_path / "data")
    plant(data)
    result = cli("inspect", data, "--json", "-q")
    assert result.exit_code == 0  # problems alone do not fail without --fail-on
    checks = found(json.loads(result.output))
    assert any("im0" in p for p in checks["box_outside"]) and any("im1" in p for p in checks["unknown_class"])
    assert checks["exact_leak"] & {"images/val/leaked.jpg", "images/train/im2.jpg"}
    assert checks["dark"] == {"images/train/im3.jpg"}
    twice = next(p for p in json.loads(result.output)["problems"] if p["check"] == "box_duplicate")
    assert (twice["path"], twice["where"]) == ("images/train/im4.jpg", "labels/train/im4.txt line 3 (object 1)")
    text = cli("inspect", data, "-q").output
    assert re.search(r"boxes outside the image: 1", text) and "images/train/im3.jpg" in text


def test_fail_on_names_groups_or_checks_and_refuses_unknown_ones(tmp_path, cli):
    data = yolo_source(tmp_path / "data")
    plant(data)
    assert cli("inspect", data, "--fail-on", "leakage").exit_code == 1
    assert cli("inspect", data, "--fail-on", "dark,unknown_class").exit_code == 1
    assert cli("inspect", data, "--fail-on", "blurry").exit_code == 0
    result = cli("inspect", data, "--fail-on", "leaks")
    assert result.exit_code == 2 and "unknown check 'leaks'" in result.output and len(result.output.splitlines()) == 1


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.anchors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.anchors.append(attrs["href"][1:])


def test_html_report_plots_and_a_thumbnail_of_each_problem(tmp_path, cli):
    pytest.importorskip("matplotlib")
    data = yolo_source(tmp_path / "data")
    plant(data)
    site = tmp_path / "report"
    for _ in range(2):  # a report of ours is written again
        result = cli("inspect", data, "--html", site)
        assert result.exit_code == 0, result.output
    page = (site / "index.html").read_text()
    parsed = _Sources()
    parsed.feed(page)
    plots = [s for s in parsed.images if s.startswith("plots/")]
    thumbs = [s for s in parsed.images if s.startswith("thumbs/")]
    assert len(plots) >= 3 and thumbs
    for src in parsed.images:
        assert cv2.imread(str(site / src)) is not None, src
    for anchor in parsed.anchors:
        assert f"id='{anchor}'" in page
    assert "images/train/im3.jpg" in page and len(list((site / "thumbs").iterdir())) == len(set(thumbs))


def test_html_refuses_a_folder_it_did_not_write(tmp_path, cli):
    data = yolo_source(tmp_path / "data")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>mine</html>")
    result = cli("inspect", data, "--html", site)
    assert result.exit_code == 2 and "not a health report augpipe wrote" in result.output
    assert "inspect:" not in result.output  # refused before anything was read
    assert (site / "index.html").read_text() == "<html>mine</html>"


def test_a_source_whose_every_image_is_skipped_still_gets_its_report(tmp_path, cli):
    data = yolo_source(tmp_path / "data", images=3)
    for label in (data / "labels").rglob("*.txt"):
        label.write_text("4 0.5 0.5 0.2 0.2\n")  # no class 4: expand skips every image
    result = cli("inspect", data, "--json", "-q", "--fail-on", "labels")
    assert result.exit_code == 1
    facts = json.loads(result.output.split("\n--fail-on")[0])
    assert len(found(facts)["unknown_class"]) == 3 and len(facts["skipped"]) == 3


def test_an_image_left_out_for_its_labels_still_has_its_pixels_checked(tmp_path, cli):
    data = yolo_source(tmp_path / "data")
    shutil.copy(data / "images/val/im7.jpg", data / "images/train/again.jpg")  # leaks, and its label is bad
    (data / "labels/train/again.txt").write_text("0 1.5 0.5 0.2 0.2\n")
    facts = json.loads(cli("inspect", data, "--json", "-q").output)
    checks = found(facts)
    assert checks["box_outside"] == {"images/train/again.jpg"}
    assert checks["exact_leak"] & {"images/train/again.jpg", "images/val/im7.jpg"}


def test_one_picture_under_two_classes_is_found_through_a_re_encoded_copy(tmp_path, cli):
    rng = np.random.default_rng(3)
    for k in range(6):
        for name in ("cat", "coffee"):
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "data" / name / f"{name}_{k}.png"), cv2.cvtColor(varied(rng, 90, 70), cv2.COLOR_RGB2BGR))
    cat = cv2.imread(str(tmp_path / "data/cat/cat_0.png"))
    cv2.imwrite(str(tmp_path / "data/coffee/dup_of_cat_0.jpg"), cat, [cv2.IMWRITE_JPEG_QUALITY, 90])
    facts = json.loads(cli("inspect", tmp_path / "data", "--json", "-q").output)
    conflict = [p for p in facts["problems"] if p["check"] == "conflicting_labels"]
    assert [{c["path"], *c["related"]} for c in conflict] == [{"cat/cat_0.png", "coffee/dup_of_cat_0.jpg"}]


def test_html_inside_the_source_is_refused(tmp_path, cli):
    data = yolo_source(tmp_path / "data")
    result = cli("inspect", data, "--html", data / "report")
    assert result.exit_code == 2 and f"is inside {data}" in result.output and not (data / "report").exists()


def test_a_normalised_value_over_one_that_no_edge_shows_is_flagged_as_ultralytics_refuses_it(tmp_path, cli):
    data = yolo_source(tmp_path / "data")
    (data / "labels/train/im0.txt").write_text("0 0.5 0.5 1.0000001 0.5\n")
    facts = json.loads(cli("inspect", data, "--json", "-q").output)
    over = [p for p in facts["problems"] if p["check"] == "box_outside"]
    assert [(p["path"], "1.0000001" in p["detail"]) for p in over] == [("images/train/im0.jpg", True)]


def test_a_source_reports_the_classes_of_the_images_expand_will_use(tmp_path, cli):
    """A mask with a value past the classes (expand skips its image) had its classes counted in
    the report's class table, which then disagreed with what expand made (a hostile tester's)."""
    from PIL import Image

    from conftest import make_scenes

    src = make_scenes(tmp_path / "seg", n=6, fmt="masks")
    before = json.loads(cli("inspect", src, "--json", "-q").stdout)["labels"]
    mask = src / "masks" / "scene_000.png"
    values = np.asarray(Image.open(mask)).copy()
    values[0, 0] = 9  # past the 3 named values: skipped at load
    Image.fromarray(values, "L").save(mask)
    facts = json.loads(cli("inspect", src, "--json", "-q").stdout)
    assert [s["path"] for s in facts["skipped"]] == ["images/scene_000.png"]
    assert sum(facts["labels"]["images"].values()) == sum(before["images"].values()) - 1
    assert "9" not in facts["labels"]["images_per_class"] and "9" not in facts["labels"].get("mask_pixels", {})
