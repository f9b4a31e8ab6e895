"""Export (augpipe/export.py): claiming the folder, naming the files, what an export leaves out and
says, and reading an export again. Each format's own writing is tested in its file; the clients
themselves load the exports in tests/clients/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.export import export
from augpipe.formats import scan
from augpipe.recipe import parse_recipe
from augpipe.store import LocalStore
from conftest import H, W, make_scenes, picture, recipe, write_image
from formats.written import QUIET, boxes, masked  # noqa: F401 (fixtures; written.py lies in tests/formats)


def files_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def voc_boxes(xml: Path) -> list[list[float]]:
    """A VOC file's boxes as [x, y, w, h] in pixels, read in the devkit's convention (xmin and
    ymin 1-based, xmax and ymax the last pixel inside)."""
    import xml.etree.ElementTree as ET

    out = []
    for box in ET.parse(xml).getroot().iter("bndbox"):
        x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append([x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1])
    return out


@pytest.mark.parametrize("args, left_out", [(("yolo", "--yolo-task", "detect"), True), (("yolo",), False),
                                            (("voc",), True), (("coco",), False)])
def test_an_export_that_leaves_the_masks_out_says_so(masked, boxes, tmp_path, cli, args, left_out):
    result = cli("export", masked, "--format", *args, "--out", tmp_path / "m", "-q")
    assert result.exit_code == 0 and ("the instance masks are not written" in result.output) == left_out, result.output
    result = cli("export", boxes, "--format", args[0], "--out", tmp_path / "b", "-q")
    assert result.exit_code == 0 and "instance masks" not in result.output


@pytest.mark.parametrize("splits, says", [
    (("train",), ["no validation split: data.yaml's val: names images/train (ultralytics requires one), so it "
                  "validates on images it trains on"]),
    (("val",), ["no training split: data.yaml's train: names images/val (ultralytics requires one), so it trains "
                "on images it validates on"]),
    (("test",), ["no training split: data.yaml's train: names images/test (ultralytics requires one), so it trains "
                 "on images it tests on", "no validation split: data.yaml's val: names images/test (ultralytics "
                 "requires one), so it validates on images it trains on"]),
    (("train", "val"), []),
])
def test_a_yolo_export_whose_train_or_val_names_another_splits_images_says_so(tmp_path, cli, splits, says):
    """A new user's: with no validation split, data.yaml's val: names images/train (ultralytics
    requires a val:) and the command said nothing of it; nor of a train: naming validation images
    (the hostile tester's)."""
    import sys

    import yaml

    sys.path.insert(0, str(Path(__file__).parent / "health"))
    from test_labels import yolo

    src = yolo(tmp_path / "src", "[a, b]", {f"{split}/{k}": f"{k % 2} 0.5 0.5 0.2 0.2\n" for split in splits
                                           for k in range(3)})
    expand(src, "flips", tmp_path / "ds", ExpandOptions(copies=0, **QUIET))
    result = cli("export", tmp_path / "ds", "--format", "yolo", "--out", tmp_path / "y", "-q")
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("no ")] == says
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    folder = {"train": "images/train", "val": "images/val", "test": "images/test"}
    assert data["train"] == folder[splits[0] if "train" not in splits else "train"]
    assert data["val"] == (folder["val"] if "val" in splits else data["train"])


@pytest.mark.parametrize("fmt, images", [("yolo", "images/train"), ("coco", "default")])
def test_copies_0_and_an_export_in_the_sources_format_give_back_its_files_byte_for_byte(tmp_path, fmt, images):
    """PNG sources under a JPEG recipe: the originals are the user's bytes, and so are the files."""
    src = make_scenes(tmp_path / "src", n=4, fmt=fmt)
    jpeg = parse_recipe("copies: 0\noutput: {format: jpeg}\ntransforms: [HorizontalFlip]\n")
    expand(src, jpeg, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", fmt, tmp_path / "out", progress=False)
    written = tmp_path / "out" / ("images/train" if fmt == "yolo" else "images/train/default")
    sources = sorted((src / images).glob("*.png"))
    assert len(sources) == 4
    for path in sources:
        assert (written / path.name).read_bytes() == path.read_bytes(), path.name


def test_export_to_an_existing_file_says_so(cli, tmp_path, folder):
    expand(folder, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    (tmp_path / "afile").write_text("mine")
    done = cli("export", tmp_path / "out", "-f", "imagefolder", "--out", tmp_path / "afile")
    assert done.exit_code == 2, done.output
    assert "afile is a file, not a folder: choose a new --out" in done.output
    assert "File exists" not in done.output and (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_export_and_read_again_gives_the_same_files_and_boxes(scenes, tmp_path, fmt):
    from augpipe.export import export

    out = tmp_path / "x"
    keep_png = recipe("[HorizontalFlip]", copies=0)  # the originals' bytes are kept when the format is theirs
    expand(scenes[fmt], keep_png, out, ExpandOptions(val_fraction=0, **QUIET))
    export(out, fmt, tmp_path / "back", progress=False)
    before, after = scan(str(scenes[fmt])), scan(str(tmp_path / "back"))
    assert after.format == fmt and after.classes == before.classes

    def by_name(found):
        return {Path(f.relpath).name: f for f in found.files}

    b, a = by_name(before), by_name(after)
    assert set(a) == set(b)
    for name, f in b.items():
        assert (scenes[fmt] / f.relpath).read_bytes() == (tmp_path / "back" / a[name].relpath).read_bytes()
        assert a[name].target.categories == f.target.categories
        np.testing.assert_allclose(np.array(a[name].target.boxes), np.array(f.target.boxes), atol=1e-4)


def test_export_voc_imagefolder_and_masks(scenes, tmp_path, folder):
    from augpipe.export import export

    for source, fmt, task in ((scenes["coco"], "voc", "detection"), (folder, "imagefolder", "classification"),
                              (scenes["masks"], "masks", "segmentation")):
        out = tmp_path / f"{fmt}-x"
        m = expand(source, "flips", out, ExpandOptions(**QUIET))
        export(out, fmt, tmp_path / fmt, progress=False)
        found = scan(str(tmp_path / fmt))
        assert found.task == task and found.classes == m["classes"]
        assert len(found.files) == sum(c["rows"] for c in m["counts"].values())


def test_export_refuses_another_task_and_a_folder_it_did_not_write(scenes, tmp_path, cli):
    out = tmp_path / "x"
    expand(scenes["masks"], "flips", out, ExpandOptions(**QUIET))
    result = cli("export", out, "--format", "yolo", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "segmentation dataset" in result.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    result = cli("export", out, "--format", "masks", "--out", tmp_path / "mine")
    assert result.exit_code == 2 and "not an augpipe export" in result.output


def test_export_refuses_a_class_or_a_row_path_that_would_leave_out(tmp_path, scenes, cli):
    data = tmp_path / "lf"
    write_image(data / "im1.jpg")
    write_image(data / "im2.jpg", seed=1)
    (data / "labels.csv").write_text("file_name,label\nim1.jpg,../../ESCAPED\nim2.jpg,ok\n")
    expand(data, recipe("[HorizontalFlip]", copies=0), tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    result = cli("export", tmp_path / "ds", "--format", "imagefolder", "--out", tmp_path / "lf-exp" / "sub")
    assert result.exit_code == 2 and "class '../../ESCAPED' cannot be a folder name" in result.output
    assert files_below(tmp_path / "lf-exp") == [] and not (tmp_path / "ESCAPED").exists()
    # a row's own path (a tampered shard) is checked too, in every format, before anything is written
    out = tmp_path / "det"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"]["path"] = "../../../x.png"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    for fmt in ("yolo", "coco", "voc"):
        result = cli("export", out, "--format", fmt, "--out", tmp_path / "x" / fmt)
        assert result.exit_code == 2 and "'../../../x.png'" in result.output and "inside --out" in result.output
    assert files_below(tmp_path / "x") == [] and not (tmp_path / "x.png").exists()


def test_export_never_writes_through_a_link_inside_its_out_nor_into_its_dataset(tmp_path, scenes, cli):
    """A folder of an earlier export made a link to a folder augpipe did not make: the export run
    again wrote its labels there. And an --out inside the dataset: its readers (pandas reads the
    whole folder) took the export's files for shards."""
    out = tmp_path / "det"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    assert cli("export", out, "--format", "yolo", "--out", tmp_path / "y").exit_code == 0
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    shutil.rmtree(tmp_path / "y" / "labels" / "train")
    (tmp_path / "y" / "labels" / "train").symlink_to(victim)
    result = cli("export", out, "--format", "yolo", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "is a link" in result.output, result.output
    assert files_below(victim) == ["keep.txt"]
    result = cli("export", out, "--format", "yolo", "--out", out / "yolo")
    assert result.exit_code == 2 and "inside the dataset folder" in result.output, result.output
    assert not (out / "yolo").exists()
    assert len(pd.read_parquet(out)) == sum(c["rows"] for c in json.loads((out / "_augpipe.json").read_text())["counts"].values())


def test_export_imagefolder_keeps_the_path_below_the_class_folder(tmp_path):
    from augpipe.export import export

    data = tmp_path / "data"
    for i, rel in enumerate(("cat/a/x0.png", "cat/b/x0.png", "dog/x0.png")):
        write_image(data / rel, seed=i, fmt=".png")
    expand(data, recipe("[HorizontalFlip]", copies=1), tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    done = export(tmp_path / "ds", "imagefolder", tmp_path / "out", progress=False)
    assert files_below(tmp_path / "out") == ["train/cat/a/x0.aug1.png", "train/cat/a/x0.png", "train/cat/b/x0.aug1.png",
                                             "train/cat/b/x0.png", "train/dog/x0.aug1.png", "train/dog/x0.png"]
    assert done["images"] == {"train": 6} and done["renamed"] == 0


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_export_gives_rows_whose_names_collide_names_of_their_own(tmp_path, fmt):
    from augpipe.export import export

    data = tmp_path / "yolo"
    boxes = {"train/a.png": [10, 10, 20, 20], "train/a.jpg": [50, 20, 30, 30], "train/sub/b.jpg": [5, 5, 10, 10],
             "train2017/sub/b.jpg": [60, 30, 20, 20], "train/c.jpg": [30, 30, 10, 10]}
    for rel, (x, y, w, h) in boxes.items():
        (data / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        image = cv2.imdecode(np.frombuffer(picture([(x, y, w, h)]), np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(data / "images" / rel), image)
        if rel != "train/a.jpg":  # a.png and a.jpg share YOLO's label file labels/train/a.txt
            (data / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / "labels" / rel).with_suffix(".txt").write_text(
                f"0 {(x + w / 2) / W} {(y + h / 2) / H} {w / W} {h / H}\n")
    (data / "data.yaml").write_text("train: [images/train, images/train2017]\nnames: [thing]\n")
    # an original keeps its bytes and its name unless it is resized: to its own size here
    jpeg = parse_recipe(f"copies: 0\noutput: {{format: jpeg, resize: {{height: {H}, width: {W}}}}}\n"
                        "transforms: [HorizontalFlip]\n")
    expand(data, jpeg, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))  # a.png becomes a.jpg
    done = export(tmp_path / "ds", fmt, tmp_path / "out", progress=False)
    assert done["images"] == {"train": 5} and done["renamed"] == 4  # c.jpg keeps its name
    back = scan(str(tmp_path / "out"))
    assert len(back.files) == 5 and len({Path(f.relpath).stem for f in back.files}) == 5
    assert sum(1 for f in back.files if Path(f.relpath).name == "c.jpg") == 1
    found = sorted(np.round(np.array(f.target.boxes), 3).tolist()[0] for f in back.files)
    if fmt == "voc":  # the devkit's 1-based whole pixels, read from the files (not by augpipe's reader)
        found = sorted(voc_boxes(p)[0] for p in (tmp_path / "out" / "Annotations").glob("*.xml"))
    if fmt == "yolo":  # normalised cx, cy, w, h back to pixels
        found = sorted([round((cx - w / 2) * W), round((cy - h / 2) * H), round(w * W), round(h * H)]
                       for cx, cy, w, h in found)
    expected = {**boxes, "train/a.jpg": boxes["train/a.png"]}  # from their shared label file
    assert [[float(v) for v in b] for b in found] == sorted([[float(v) for v in b] for b in expected.values()])
    if fmt == "coco":
        book = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
        assert len({i["file_name"] for i in book["images"]}) == 5


def test_export_into_an_export_writes_the_same_dataset_again_and_refuses_another(tmp_path, scenes, cli, monkeypatch):
    from augpipe.cli import _error_table, _state

    one, two, out = tmp_path / "one", tmp_path / "two", tmp_path / "out"
    expand(scenes["yolo"], recipe("[HorizontalFlip]", copies=0), one, ExpandOptions(val_fraction=0, **QUIET))
    expand(scenes["yolo"], recipe("[VerticalFlip]", copies=0), two, ExpandOptions(val_fraction=0, **QUIET))
    write = LocalStore.write_bytes
    written = []

    def interrupted(self, name, data, sync=True):
        if name.startswith("images/") and len(written) == 3:
            raise KeyboardInterrupt
        written.append(name)
        return write(self, name, data, sync)

    monkeypatch.setattr(LocalStore, "write_bytes", interrupted)
    result = cli("export", one, "--format", "yolo", "--out", out)
    assert result.exit_code == 130
    assert "the export is unfinished; run the same command again" in result.output
    marker = json.loads((out / ".augpipe-export").read_text())
    assert marker["complete"] is False and marker["format"] == "yolo" and marker["from"] == str(one.resolve())
    monkeypatch.setattr(LocalStore, "write_bytes", write)
    _state["command"] = "expand"  # expand's wording is its own
    assert "finished shards are kept" in _error_table(KeyboardInterrupt())[1]
    result = cli("export", one, "--format", "yolo", "--out", out)  # the same command, again
    assert result.exit_code == 0 and "train 16 images" in result.output
    assert json.loads((out / ".augpipe-export").read_text())["complete"] is True
    assert len(files_below(out / "images")) == 16
    result = cli("export", two, "--format", "yolo", "--out", out)
    assert result.exit_code == 2 and f"holds an export (yolo) of {one.resolve()}" in result.output
    result = cli("export", one, "--format", "coco", "--out", out)
    assert result.exit_code == 2 and "holds an export (yolo) of this dataset" in result.output


def test_bars_written_to_a_log_end_on_their_final_count(tmp_path, folder):
    """stderr not a terminal (a log, CI): each bar's last state is its whole count on a line of
    its own, not the first 0% that a bar wiped at its end leaves behind."""
    from conftest import run

    done = run("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-w", "1")
    assert done.returncode == 0, done.stderr
    exported = run("export", tmp_path / "out", "-f", "imagefolder", "-o", tmp_path / "exported")
    assert exported.returncode == 0, exported.stderr
    for log, bars in ((done.stderr, ("hash", "expand")), (exported.stderr, ("export",))):
        lines = log.splitlines()
        for bar in bars:
            last = [line.split("\r")[-1] for line in lines if f"{bar}:" in line][-1]
            assert f"{bar}: 100%" in last, log


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_a_row_without_its_size_is_exported_at_its_image_size(scenes, tmp_path, fmt):
    out = tmp_path / "x"
    expand(scenes["coco"], recipe("[HorizontalFlip]", copies=1), out, ExpandOptions(val_fraction=0, **QUIET))
    export(out, fmt, tmp_path / "whole", progress=False)
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["width"] = None  # a row edited by hand
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    export(out, fmt, tmp_path / "edited", progress=False)
    whole, edited = files_below(tmp_path / "whole"), files_below(tmp_path / "edited")
    assert whole == edited
    assert all((tmp_path / "whole" / f).read_bytes() == (tmp_path / "edited" / f).read_bytes() for f in whole)


def test_an_export_of_shards_changed_since_expand_says_so(cli, tmp_path, folder):
    """A new user's: export wrote a damaged image without a word, where --verify listed its shard."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    clean = cli("export", out, "-f", "imagefolder", "-o", tmp_path / "clean")
    assert clean.exit_code == 0 and "changed since" not in clean.output
    shard = sorted(out.glob("train-*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"]["bytes"] = rows[0]["image"]["bytes"][:-2] + b"\x00\xff\xd9"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    told = cli("export", out, "-f", "imagefolder", "-o", tmp_path / "x")
    assert told.exit_code == 0 and (f"warning: 1 shard changed since expand wrote it ({shard.name}): exported as "
                                    "it is now; augpipe inspect --verify lists the damage") in told.output
