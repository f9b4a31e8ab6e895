"""Hostile input, round two (issue 15): formats, numbers, messages, Ray; each a regression test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import OutputError, SkipInput, SourceError
from augpipe.formats import scan
from augpipe.store import LocalStore, read_source
from conftest import make_folder, make_scenes, upload
from conftest import coco_ann, coco_image, img, reasons, write

QUIET = dict(progress=False, workers=1)
ROOT = Path(__file__).parent.parent
HUGE = 10 ** 400  # parses from JSON as a Python int; no float holds it


def augpipe(*args) -> list[str]:
    return [sys.executable, "-m", "augpipe", *map(str, args)]


# ---------------------------------------------------------------- 13. numbers and nesting: a recorded skip

def test_integers_too_large_for_a_float_are_recorded_skips(tmp_path):
    root = tmp_path / "c"
    for name in ("box", "poly", "rle", "width", "fine"):
        img(root / "train" / f"{name}.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "box.jpg"), coco_image(2, "poly.jpg"), coco_image(3, "rle.jpg"),
                   coco_image(4, "width.jpg", w=HUGE), coco_image(5, "fine.jpg")],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            coco_ann(1, 1, 1, [1, 1, HUGE, 4]),
            coco_ann(2, 2, 1, [1, 1, 4, 4], segmentation=[[1, 1, HUGE, 1, 4, 4]]),
            coco_ann(3, 3, 1, [1, 1, 4, 4], segmentation={"size": [HUGE, 64], "counts": [0, 10]}),
            coco_ann(4, 4, 1, [1, 1, 4, 4]),
            coco_ann(5, 5, 1, [1, 1, 4, 4]),
        ]})
    found = scan(root)
    why = reasons(found)
    assert "bbox is not 4 numbers" in why["train/box.jpg"]
    assert "segmentation polygon is not" in why["train/poly.jpg"]
    assert "segmentation RLE is not" in why["train/rle.jpg"]
    # a width no float holds is no usable size: the image is checked against its decoded size
    assert {f.relpath for f in found.files} == {"train/width.jpg", "train/fine.jpg"}


def test_a_label_file_nested_beyond_reason_is_one_line(cli, tmp_path):
    root = tmp_path / "d"
    img(root / "a.jpg")
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": "x"}\n' + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(SourceError, match="metadata.jsonl: line 2: not valid JSON \\(nested too deeply\\)"):
        scan(root)
    done = cli("expand", root, "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 2 and "nested too deeply" in done.output and "Traceback" not in done.output


class _Refusing(LocalStore):
    """A store whose reads fail as pyarrow fails for a key it cannot address."""

    def __init__(self, exc: Exception):
        super().__init__(Path("."))
        self.exc = exc

    def read_bytes(self, name: str) -> bytes:
        raise self.exc


@pytest.mark.parametrize("exc", [pa.ArrowInvalid("Empty path component in path a//b.jpg"),
                                 pa.ArrowNotImplementedError("no"), OSError()])
def test_pyarrow_errors_reading_one_key_are_a_recorded_skip(exc):
    with pytest.raises(SkipInput, match="cannot read"):
        read_source(_Refusing(exc), "a//b.jpg")


# ---------------------------------------------------------------- 16. messages and exit codes

def test_export_to_an_existing_file_says_so(cli, tmp_path, folder):
    expand(folder, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    (tmp_path / "afile").write_text("mine")
    done = cli("export", tmp_path / "out", "-f", "imagefolder", "--out", tmp_path / "afile")
    assert done.exit_code == 2, done.output
    assert "afile is a file, not a folder: choose a new --out" in done.output
    assert "File exists" not in done.output and (tmp_path / "afile").read_text() == "mine"


def test_a_changed_source_is_said_in_words(tmp_path, folder):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(copies=0, **QUIET))
    (folder / "cat" / "cat_000.jpg").unlink()
    with pytest.raises(OutputError) as caught:
        expand(folder, "flips", out, ExpandOptions(copies=0, **QUIET))
    assert "made before the source files changed (a file was added, removed or edited since)" in str(caught.value)
    assert "source_files" not in str(caught.value)


def test_bare_augpipe_prints_the_help_and_no_empty_error():
    done = subprocess.run(augpipe(), capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "expand" in done.stdout + done.stderr and "augpipe: error" not in done.stdout + done.stderr


def test_flags_show_no_value(cli):
    shown = cli("expand", "--help").output
    assert "--balance" in shown and "<bool>" not in shown
    assert "<int>" in shown  # options that take a value still say which


def test_an_internal_crash_is_not_exit_1(cli, monkeypatch, folder, tmp_path):
    import augpipe.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(augpipe.pipeline, "expand", broken)
    done = cli("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 3 and "unexpected error: ZeroDivisionError: boom" in done.output


def test_an_s3_run_leaves_no_temp_folder(tmp_path, s3_server, bucket):
    data = make_folder(tmp_path / "data", per_class=3)
    upload(data, f"s3://{bucket}/src")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    for workers in (1, 2):
        done = subprocess.run(augpipe("expand", f"s3://{bucket}/src", "-r", "flips", "-k", "1", "-w", workers,
                                      "-o", f"s3://{bucket}/out{workers}", "-q"),
                              capture_output=True, text=True, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    assert [p.name for p in temp.iterdir() if p.name.startswith("augpipe-")] == []


# ---------------------------------------------------------------- 5. --format auto on evidence, not one file

@pytest.mark.parametrize("stray, name, part", [
    ("data.yaml", "yolo", "0%"), ("cat/cat_000.xml", "voc", "10%"), ("cat/cat_000_mask.png", "masks", "10%"),
])
def test_one_stray_file_does_not_choose_the_layout(tmp_path, stray, name, part):
    data = make_folder(tmp_path / "data", per_class=5)
    if stray.endswith(".png"):
        img(data / stray)
    else:
        write(data / stray, "names: [a]\n" if stray.endswith(".yaml") else "<annotation/>")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    assert (m["format"], m["task"], m["classes"]) == ("imagefolder", "classification", ["cat", "dog"])
    warning = next(w for w in m["warnings"] if w.startswith("--format auto"))
    assert f"{name} annotations cover only {part} of the images, too few: read as imagefolder" in warning
    assert f"--format {name} reads it as {name}" in warning


def test_two_layouts_that_fit_are_said(tmp_path):
    root = tmp_path / "d"
    img(root / "train" / "a.jpg")
    write(root / "train" / "a.xml", "<annotation><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                    "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg")], "categories": [{"id": 1, "name": "x"}],
        "annotations": [coco_ann(1, 1, 1, [1, 1, 8, 8])]})
    found = scan(root)
    assert found.format == "coco"
    assert found.warnings == ["--format auto: the files fit coco, voc; read as coco, the first (--format chooses another)"]


def test_a_failure_of_the_detected_layout_names_format(tmp_path):
    root = tmp_path / "d"
    for n in "ab":
        img(root / f"{n}.jpg")
        write(root / f"{n}.xml", "<annotation>")
    with pytest.raises(SourceError, match=r"every image .* was skipped \(voc\).*\(read as voc, the layout "
                                          r"detected: --format names another\)"):
        scan(root)


def test_a_label_file_beside_class_folders_is_said(tmp_path):
    data = make_folder(tmp_path / "data", per_class=2)
    write(data / "labels.csv", "file_name,label\ncat/cat_000.jpg,cat\ncat/cat_001.jpg,cat\n")
    found = scan(data)
    assert found.format == "labelfiles"
    assert found.warnings == ["--format auto: a label file was read, though the images also lie in folders "
                              "(cat, dog): --format imagefolder takes each folder as a class"]


# ---------------------------------------------------------------- 9. class names an export cannot carry

def _coco_named(root: Path, name: str) -> Path:
    img(root / "train" / "a.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg")], "categories": [{"id": 1, "name": name}],
        "annotations": [coco_ann(1, 1, 1, [1, 1, 8, 8])]})
    return root


@pytest.mark.parametrize("make", ["coco", "voc", "labelfiles", "imagefolder", "masks"])
def test_a_class_name_with_a_control_character_is_refused_by_every_reader(tmp_path, make):
    root = tmp_path / make
    if make == "coco":
        _coco_named(root, "ca\x07t")
    elif make == "voc":
        img(root / "a.jpg")
        write(root / "a.xml", "<annotation><object><name>ca\tt</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                              "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    elif make == "labelfiles":
        img(root / "a.jpg")
        write(root / "labels.csv", "file_name,label\na.jpg,\"ca\x1bt\"\n")
    elif make == "imagefolder":
        img(root / "ca\x01t" / "a.jpg")
        img(root / "dog" / "b.jpg")
    else:
        img(root / "images" / "a.jpg")
        img(root / "masks" / "a.png")
        write(root / "classes.txt", "background\nca\x7ft\n")
    with pytest.raises(SourceError, match=r"the class name 'ca\\(x..|t)t' holds a control character \(U\+00..\): "
                                          "rename the class"):
        scan(root)


def test_a_voc_export_of_a_class_with_a_colon_lists_it_where_datumaro_reads_it(tmp_path):
    from augpipe.export import export

    expand(_coco_named(tmp_path / "d", "person:adult"), "flips", tmp_path / "ds", ExpandOptions(copies=0, **QUIET))
    export(tmp_path / "ds", "voc", tmp_path / "voc", progress=False)
    assert not (tmp_path / "voc" / "labelmap.txt").exists()
    assert json.loads((tmp_path / "voc" / "dataset_meta.json").read_text()) == {"labels": ["person:adult"]}


# ---------------------------------------------------------------- 11. values that silently became others

def test_a_32_bit_mask_value_outside_a_byte_is_a_recorded_skip(tmp_path):
    from PIL import Image

    from augpipe.targets.masks import read_mask

    root = make_scenes(tmp_path / "seg", n=4, fmt="masks")
    values = np.asarray(Image.open(root / "masks" / "scene_000.png"), np.int32)
    values[0, 0] = -2  # 254 once wrapped into a byte: another class, silently
    (root / "masks" / "scene_000.png").unlink()
    Image.fromarray(values, "I").save(root / "masks" / "scene_000.tif")
    buf = (root / "masks" / "scene_000.tif").read_bytes()
    with pytest.raises(SkipInput, match=r"has values outside 0..255 \(-2..2\)"):
        read_mask(buf, "m.tif")
    m = expand(root, "flips", tmp_path / "out", ExpandOptions(copies=0, **QUIET))
    assert any(s["path"] == "images/scene_000.png" and "outside 0..255" in s["reason"] for s in m["skipped"])


def test_json_labels_1_and_1_0_are_one_class(tmp_path):
    root = tmp_path / "d"
    for n in "abc":
        img(root / f"{n}.jpg")
    write(root / "metadata.jsonl", '{"file_name": "a.jpg", "label": 1}\n{"file_name": "b.jpg", "label": 1.0}\n'
                                   '{"file_name": "c.jpg", "label": 2.5}\n')
    found = scan(root)
    assert found.classes == ["1", "2.5"]
    assert {f.relpath: f.class_name for f in found.files} == {"a.jpg": "1", "b.jpg": "1", "c.jpg": "2.5"}


# ---------------------------------------------------------------- 8. COCO ids kept

def test_a_coco_export_keeps_the_sources_category_and_annotation_ids(tmp_path):
    from augpipe.export import export

    root = tmp_path / "c"
    img(root / "train" / "a.jpg")
    img(root / "train" / "b.jpg")
    write(root / "annotations" / "instances_train.json", {
        "images": [coco_image(1, "a.jpg"), coco_image(2, "b.jpg")],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [coco_ann(41, 1, 7, [1, 1, 8, 8]), coco_ann(17, 1, 3, [10, 10, 8, 8]),
                        coco_ann(99, 2, 3, [2, 2, 8, 8])]})
    m = expand(root, "flips", tmp_path / "ds", ExpandOptions(copies=0, val_fraction=0, **QUIET))
    assert m["classes"] == ["cat", "dog"] and m["category_ids"] == [3, 7]
    export(tmp_path / "ds", "coco", tmp_path / "out", progress=False)
    book = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert sorted((c["id"], c["name"]) for c in book["categories"]) == [(3, "cat"), (7, "dog")]
    names = {c["id"]: c["name"] for c in book["categories"]}
    assert sorted((a["id"], names[a["category_id"]]) for a in book["annotations"]) == \
        [(17, "cat"), (41, "dog"), (99, "cat")]


# ---------------------------------------------------------------- 15. Ray: its start-up, and its end

def _session(sid: int) -> list[str]:
    """The command lines of a session's live processes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != b"Z":
                    found.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_a_driver_killed_during_rays_start_up_takes_rays_processes_with_it(tmp_path):
    pytest.importorskip("ray")
    import time

    data = make_folder(tmp_path / "data", per_class=20)
    env = {k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(augpipe("expand", data, "-r", "flips", "-o", tmp_path / "out", "--engine", "ray",
                                    "-w", "1", "-q"), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any("raylet" in c for c in _session(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("raylet" in c for c in _session(proc.pid)), "Ray did not start"
    time.sleep(0.5)  # the raylet starts its agents
    os.kill(proc.pid, 9)
    proc.wait()
    deadline = time.monotonic() + 15  # Ray's agents alone lived two minutes
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session(proc.pid) == []


class _FakeRay:
    """ray.init failing as a raylet that timed out during start-up does, `fails` times."""

    def __init__(self, fails: int):
        self.fails, self.calls = fails, 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError("The current node timed out during startup. This could happen because ...")

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("fails", [1, 2])
def test_rays_own_start_up_failure_is_retried_once_then_said(monkeypatch, fails):
    from augpipe.engines import ray as engine
    from augpipe.errors import EngineError

    fake = _FakeRay(fails)
    monkeypatch.setattr(engine, "_import_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_engine = engine.RayEngine(1)
    if fails == 1:
        ray_engine.__enter__()
        ray_engine._end_guard()
        assert fake.calls == 2 and ray_engine._started_here
        return
    with pytest.raises(EngineError, match=r"a local Ray did not start, twice \(The current node timed out during "
                                          r"startup.*\): start a cluster \(`ray start --head`\) and pass its "
                                          "address in RAY_ADDRESS") as caught:
        ray_engine.__enter__()
    assert fake.calls == 2 and caught.value.exit_code == 3 and "GUARD" not in "".join(os.environ)


def test_pyarrow_errors_reading_an_annotation_file_are_its_reason():
    from augpipe.formats.common import read_files

    store = _Refusing(pa.ArrowInvalid("Empty path component in path a//labels.csv"))
    assert read_files(store, ["a//labels.csv"]) == {"a//labels.csv": "cannot read: Empty path component in path "
                                                                      "a//labels.csv"}


def test_a_data_yaml_nested_beyond_reason_is_one_line(tmp_path):
    root = tmp_path / "y"
    img(root / "images" / "a.jpg")
    write(root / "labels" / "a.txt", "")
    write(root / "data.yaml", "names: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(SourceError, match=r"data.yaml: not valid YAML \(nested too deeply\)"):
        scan(root)


@pytest.mark.parametrize("name", ["ca\u202et", "ca\u2028t", "ca\u2066t"])
def test_a_class_name_that_reorders_or_breaks_lines_is_refused(tmp_path, name):
    _coco_named(tmp_path / "c", name)
    with pytest.raises(SourceError, match="holds a control character"):
        scan(tmp_path / "c")


def test_a_json_label_that_is_no_number_is_no_label(tmp_path):
    img(tmp_path / "d" / "a.jpg")
    img(tmp_path / "d" / "b.jpg")
    write(tmp_path / "d" / "metadata.jsonl", '{"file_name": "a.jpg", "label": NaN}\n{"file_name": "b.jpg", "label": 1}\n')
    found = scan(tmp_path / "d")
    assert found.classes == ["1"] and [p for p, _ in found.skipped] == ["a.jpg"]
