"""`inspect` (augpipe/inspection.py): what an expanded dataset holds and what augmentation changed,
--verify on a dataset, and what a source folder holds."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from conftest import duplicated_folder, write_image
from expanded_kinds import class_counts, dropped, expanded_kinds, held, shard_rows

QUIET = dict(progress=False, workers=1)


def test_verify_with_source_finds_a_changed_source(tmp_path, folder, cli):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    clean = cli("inspect", out, "--verify", "--source", folder)
    assert clean.exit_code == 0 and f"labels and splits checked, every row against its file in {folder}: all is well" \
        in clean.output and "donor" not in clean.output  # a recipe without mixing steps has no donors
    assert "against its file" not in cli("inspect", out, "--verify").output
    write_image(folder / "dog" / "dog_004.jpg", seed=77)
    result = cli("inspect", out, "--verify", "--source", folder)
    assert result.exit_code == 1 and "source dog/dog_004.jpg: changed since it was expanded" in result.output


def test_split_by_path_leaks_and_verify_and_train_say_so(tmp_path, cli):
    data = duplicated_folder(tmp_path / "data")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0.5, split_by="path", **QUIET))
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "leakage: identical source content in train and validation" in result.output


def test_inspect_source_lists_duplicates_and_look_alikes(tmp_path, cli):
    data = duplicated_folder(tmp_path / "data")
    image = cv2.imread(str(data / "dog" / "dog_005.jpg"))
    cv2.imwrite(str(data / "dog" / "dog_005_again.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    facts = json.loads(cli("inspect", data, "--json", "-q").output)
    groups = defaultdict(set)
    for p in facts["problems"]:
        groups[p["check"]] |= {frozenset([p["path"], *p["related"]])}
    copies = {"cat/cat_000.jpg", *(f"cat/copy_{i:02d}.jpg" for i in range(20))}
    assert {frozenset(g) for g in groups["exact_duplicate"]} == {frozenset(copies)}
    assert {"dog/dog_005.jpg", "dog/dog_005_again.jpg"} in [set(g) for g in groups["near_duplicate"]]


def test_verify_flags_an_augmented_copy_of_one_flat_colour(folder, tmp_path, cli):
    import pyarrow as pa

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(i for i, r in enumerate(rows) if r["copy"] == 1)
    rows[k]["image"]["bytes"] = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "copy 1 is a single flat colour" in result.output


def test_verify_finds_a_box_outside_its_image(scenes, tmp_path, cli):

    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    assert cli("inspect", out, "--verify").exit_code == 0
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["objects"]["bbox"][0] = [70.0, 50.0, 40.0, 40.0]
    fixed = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(fixed, shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "outside the 80×64 image" in result.output


def _small_mask() -> dict:
    return {"bytes": cv2.imencode(".png", np.ones((8, 10), np.uint8))[1].tobytes(), "path": None}


@pytest.mark.parametrize("damage, said", [
    ("one mask fewer", "{n} boxes but {m} instance masks"),
    ("a null mask", "instance mask 0 is missing"),
    ("a mask of another size", "instance mask 0 is 10×8, the row's size 80×64"),
])
def test_instance_masks_that_do_not_pair_with_their_boxes_are_named_everywhere(scenes, tmp_path, cli, damage, said):
    """expand writes a mask for each object, at its image's size; a row whose masks do not (one cut
    off, one null, one of another size) is damage: --verify lists it, the readers name the row
    (they gave 3 boxes with 2 masks, or the small mask as it was), export refuses it in one line
    (it paired boxes with the masks left, or wrote the box as the object's outline), and a
    recipe's donor is named too. The rows before it hold no objects, so that a reader converts
    the whole row group at once: the row it names is still the damaged one (a hostile tester's)."""
    from augpipe.errors import DamagedRow
    from augpipe.readers import DatasetDonors, ShardDataset, loader
    from augpipe.recipe import load_recipe

    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    for row in rows[:4]:  # no objects: small targets, kept, and the rest of the group converted in one go
        row["objects"] = {k: [] for k in row["objects"]}
    k = next(i for i, r in enumerate(rows) if i > 4 and r["copy"] == 0 and len(r["objects"]["mask"]) >= 2)  # a donor
    masks = rows[k]["objects"]["mask"]
    rows[k]["objects"]["mask"] = {"one mask fewer": masks[:-1], "a null mask": [None, *masks[1:]],
                                  "a mask of another size": [_small_mask(), *masks[1:]]}[damage]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    m = len(masks) - 1
    said = said.format(n=len(masks), m=m).replace(f"{m} instance masks", f"{m} instance mask{'' if m == 1 else 's'}")
    named = f"{shard.name} row {k}: {said}"

    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and f"row {k} " in result.output and said in result.output
    dataset = ShardDataset(out, "train")
    with pytest.raises(DamagedRow, match=re.escape(named)):
        dataset[k]
    assert len(dataset[k + 1][1]["masks"]) == len(dataset[k + 1][1]["boxes"])
    fresh = ShardDataset(out, "train")
    fresh.__getitems__([0, 1, 2, 3])  # the empty rows: the group's next targets are converted together
    with pytest.raises(DamagedRow, match=re.escape(named)):
        fresh.__getitems__([k - 1, k, k + 1])
    with pytest.raises(DamagedRow, match=re.escape(named)):
        for _ in loader(ShardDataset(out, "train"), 4, threads=2, seed=0):
            pass

    exported = cli("export", out, "--format", "coco", "--out", tmp_path / "coco")
    assert exported.exit_code != 0 and said in exported.output and "Traceback" not in exported.output
    assert len(exported.output.strip().splitlines()[-1]) < 300 and "scene_" in exported.output.strip().splitlines()[-1]

    recipe = tmp_path / "mix.yaml"
    recipe.write_text("transforms:\n  - Mosaic: {p: 1, target_size: [64, 80], cell_shape: [32, 40]}\n")
    donors = DatasetDonors(out, load_recipe(recipe))  # what ShardDataset(out, recipe=...) draws from
    with pytest.raises(DamagedRow, match=re.escape(f"{shard.name} row {k} (a donor, the original of ")):
        donors.load(rows[k]["source"])


@pytest.mark.parametrize("damage, said", [
    ("a null category", "no category (null)"),
    ("one category fewer", "{n} boxes but {m} categories"),
    ("one id fewer", "{n} boxes but {m} ids"),
])
def test_boxes_whose_fields_do_not_pair_are_named_by_verify_readers_export_and_train(scenes, tmp_path, cli,
                                                                                     damage, said):
    """A second hostile tester's: a null category was a TypeError in the readers, export, train and
    `--verify` itself; a row with an id fewer was refused by the readers but passed by `--verify`;
    train named no row ("unexpected error: ValueError: 2 boxes but 1 categories")."""
    from augpipe.dataset import open_dataset
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset
    from augpipe.training.boxes import read_boxes

    out = tmp_path / "out"
    expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[1]["objects"] = {k: [] for k in rows[1]["objects"]}
    rows[2]["objects"] = {k: None for k in rows[2]["objects"]}  # every list null: no objects, as readers take it
    k = next(i for i, r in enumerate(rows) if i > 2 and len(r["objects"]["bbox"]) >= 2)
    objects, n = rows[k]["objects"], len(rows[k]["objects"]["bbox"])
    if damage == "a null category":
        objects["category"][0] = None
    else:
        field = "category" if damage == "one category fewer" else "id"
        objects[field] = objects[field][:-1]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    said = said.format(n=n, m=n - 1)

    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and f"row {k} " in result.output and said in result.output
    assert "row 2 " not in result.output and "Traceback" not in result.output
    with pytest.raises(DamagedRow, match=re.escape(f"{shard.name} row {k}")):
        ShardDataset(out, "train")[k]
    if damage != "one id fewer":  # the exports and the trainers read no ids
        exported = cli("export", out, "--format", "coco", "--out", tmp_path / "coco")
        assert exported.exit_code == 2 and said.split(" (")[0] in exported.output and "Traceback" not in exported.output
        with pytest.raises(DamagedRow, match=re.escape(f"{shard.name} row {k}: ")):
            read_boxes(open_dataset(out), "train", 32, False)


def test_a_semantic_mask_not_of_its_images_size_is_named_by_readers_export_and_train(scenes, tmp_path, cli):
    """A second hostile tester's: a segmentation row whose mask is another size than its image was
    read by most reader paths as both, silently (with a recipe, albumentations' error named no row),
    exported as it was and stretched by the trainer; `--verify` alone listed it."""
    from augpipe.dataset import open_dataset
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset, loader
    from augpipe.training.segmentation import read_masks

    out = tmp_path / "out"
    expand(scenes["masks"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = 5
    rows[k]["annotation"]["bytes"] = cv2.imencode(".png", np.zeros((32, 40), np.uint8))[1].tobytes()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    w, h = rows[k]["width"], rows[k]["height"]
    named = re.escape(f"{shard.name} row {k}: mask is 40×32, the ")

    assert f"row {k} " in cli("inspect", out, "--verify").output
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train")[k]
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train").__getitems__([k - 1, k, k + 1])
    with pytest.raises(DamagedRow, match=named):
        for _ in loader(ShardDataset(out, "train", recipe="flips"), 4, num_workers=0, seed=0):
            pass
    exported = cli("export", out, "--format", "masks", "--out", tmp_path / "masks")
    assert exported.exit_code == 2 and f"mask is 40×32, the image {w}×{h}" in exported.output  # --verify's words
    with pytest.raises(DamagedRow, match=named):
        read_masks(open_dataset(out), "train", 32, False, 3)


def test_a_trainer_of_boxes_reads_an_instance_masks_dataset_without_its_masks(scenes):
    """The trainers read the boxes alone: the masks' check is the readers' (it refused every row
    of a COCO dataset with polygons, "3 boxes but 0 instance masks", until a hostile tester ran
    `augpipe train` on one)."""
    from augpipe.dataset import open_dataset
    from augpipe.training.boxes import read_boxes

    out = scenes["coco"].parent / "out-for-train"
    if not out.exists():
        expand(scenes["coco"], "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    images, boxes, labels, _ = read_boxes(open_dataset(out), "train", 32, False)
    assert len(images) == len(boxes) == len(labels) > 0 and sum(len(b) for b in boxes) > 0


# ---------------------------------------------------------------- a dataset made with multi-image steps

@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import mixed_scenes

    return mixed_scenes(tmp_path_factory.mktemp("mixed"))


def _rows(out: Path, split: str = "*") -> list[dict]:
    return [r for p in sorted(out.glob(f"{split}-*.parquet")) for r in pq.read_table(p).to_pylist()]


def _donors(row: dict) -> list[tuple[str, dict]]:
    """(step, donor) of each donor a row's lineage names, read by the step names the registry knows."""
    from augpipe.mixing import registry

    return [(name, d) for name, params in json.loads(row["transforms"]) if name in registry() for d in params["donors"]]


def _copy_tree(out: Path, to: Path) -> Path:
    shutil.copytree(out, to)
    return to


def test_inspect_shows_objects_a_class_donors_used_and_objects_dropped(mixed, cli):
    _, out = mixed
    train = _rows(out, "train")
    objects = Counter(c for r in train for c in r["objects"]["category"])
    used = defaultdict(lambda: [0, set()])
    for r in train:
        steps = _donors(r)
        for name in {n for n, _ in steps}:
            used[name][0] += 1
        for name, d in steps:
            used[name][1].add(d["source"])
    assert set(used) == {"Mosaic", "CopyPaste", "MixUp"}
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert facts["mixing"] == {n: {"rows": k, "donor_images": len(s)} for n, (k, s) in used.items()}
    manifest = json.loads((out / "_augpipe.json").read_text())
    assert facts["dropped_by"] == manifest["dropped_by"] and manifest["dropped_by"]
    text = cli("inspect", out, "-q").output
    table = class_table(text)
    for c, name in enumerate(manifest["classes"]):
        assert table[name][table["class"].index("train objects")].endswith(f"-> {objects[c]}"), text
    for name, (k, s) in used.items():
        assert f"{name}: {k} row{'s' * (k != 1)}, {len(s)} donor image{'s' * (len(s) != 1)}" in text
    for reason, by_class in manifest["dropped_by"].items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(reason))
        assert all(f"{c} {n}" in line for c, n in by_class.items()) and str(sum(by_class.values())) in line


def test_verify_passes_on_a_mix_output_and_its_sources(mixed, cli):
    source, out = mixed
    result = cli("inspect", out, "--verify", "--source", source)
    assert result.exit_code == 0 and "all is well" in result.output, result.output


def _retarget(out: Path, change) -> None:
    """`change(row, donors)` on the training rows with donors, each shard written back."""
    for shard in sorted(out.glob("train-*.parquet")):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        for row in rows:
            applied = json.loads(row["transforms"])
            donors = [d for _, params in applied if isinstance(params, dict) for d in params.get("donors", [])]
            if donors and change(row, donors):
                row["transforms"] = json.dumps(applied)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def test_verify_flags_a_donor_from_validation_or_from_nowhere(mixed, tmp_path, cli):
    _, built = mixed
    out = _copy_tree(built, tmp_path / "out")
    validation = _rows(out, "validation")
    assert len(validation) >= 2, "the test needs two validation images"
    (val_a, val_b) = validation[:2]
    done = []

    def change(row, donors):
        what = len(done)
        if what == 0:  # a validation image by its path
            donors[0].update(source=val_a["source"], sha256=val_a["source_sha256"])
        elif what == 1:  # a validation image's content under a name of no source
            donors[0].update(source="elsewhere/twin.png", sha256=val_b["source_sha256"])
        elif what == 2:  # no source at all
            donors[0].update(source="nowhere/ghost.png", sha256="0" * 64)
        elif what == 3:  # a training source without a row: every copy of it failed
            donors[0].update(source="gone/failed.png", sha256="1" * 64)
        else:
            return False
        done.append(row["source"])
        return True

    _retarget(out, change)
    assert len(done) == 4
    manifest = json.loads((out / "_augpipe.json").read_text())
    manifest["failed_copies"] = [{"path": "gone/failed.png", "copy": 1, "reason": "augmentation failed: ..."}]
    (out / "_augpipe.json").write_text(json.dumps(manifest))
    problems = json.loads(cli("inspect", out, "--verify", "--json", "-q").output)["problems"]
    assert any(p.startswith(f"leakage: validation source {val_a['source']} is a donor of 1 row") for p in problems)
    assert any(p.startswith(f"leakage: donor elsewhere/twin.png has the content of validation source {val_b['source']}")
               for p in problems)
    assert any(p.startswith("donor nowhere/ghost.png is no source of this dataset") for p in problems)
    assert any(p.startswith("donor elsewhere/twin.png is no source of this dataset") for p in problems)
    assert not any("failed.png" in p for p in problems)
    assert all("donor" not in p or any(s in p for s in (val_a["source"], "twin", "ghost")) for p in problems)
    assert cli("inspect", out, "--verify").exit_code == 1


def test_verify_with_source_finds_a_donor_changed_since(mixed, tmp_path, cli):
    source, built = mixed
    out = _copy_tree(built, tmp_path / "out")
    data = _copy_tree(source, tmp_path / "data")
    took = Counter(d["source"] for r in _rows(out, "train") for _, d in _donors(r))
    donor, n = took.most_common(1)[0]
    write_image(data / donor, seed=99, fmt=".png")
    result = cli("inspect", out, "--verify", "--source", data)
    assert result.exit_code == 1
    assert f"source {donor}: changed since it was expanded" in result.output
    assert re.search(rf"donor {re.escape(donor)}: changed since it was expanded \(sha256 \w+, {n} rows took it with ",
                     result.output), result.output
    assert sum("changed since" in ln for ln in result.output.splitlines()) == 2


# ---------------------------------------------------------------- what augmentation changed, every kind

KINDS = ("classification", "coco", "yolo", "voc", "keypoints", "segmentation")
OBJECTS = ("coco", "yolo", "voc", "keypoints")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, Path]:
    return expanded_kinds(tmp_path_factory.mktemp("kinds"))


def class_table(text: str) -> dict[str, list[str]]:
    """The report's class table: its first cell (the header's "class", or a class) -> its cells."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("  classes   ")) + 1
    table = {}
    for line in lines[start:]:
        if not line.startswith("    ") or line.startswith(("    in no row:", "    ...")):
            break
        cells = re.split(r"\s{2,}", line.strip())
        table[cells[0]] = cells[1:]
    return table


@pytest.mark.parametrize("name", KINDS)
def test_inspect_counts_each_class_before_and_after_augmentation(kinds, name, cli):
    out = kinds[name]
    truth = class_counts(out)
    assert truth["train"]["before"] != truth["train"]["after"]  # augmentation changed the counts
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert facts["class_counts"] == truth
    table = class_table(cli("inspect", out, "-q").output)
    columns = [(split, what) for split in truth for what in truth[split]["after"]]
    assert table.pop("class") == [f"{split} {what}" for split, what in columns]
    held = [c for c in facts["classes"] if any(truth[s]["after"][w].get(c) for s, w in columns)]
    assert list(table) == held and held
    for c, cells in table.items():
        assert cells == [f"{truth[s]['before'][w].get(c, 0)} -> {truth[s]['after'][w].get(c, 0)}" if s == "train"
                         else str(truth[s]["after"][w].get(c, 0)) for s, w in columns]


def test_inspect_names_the_classes_no_row_holds(kinds, cli):
    out = kinds["segmentation"]
    truth = class_counts(out)
    classes = json.loads((out / "_augpipe.json").read_text())["classes"]
    absent = [c for c in classes if not any(truth[s]["after"]["rows"].get(c) for s in truth)]
    assert absent == ["background"]  # value 0 is no class a row holds: not named as missing (a new user's
    assert not [line for line in cli("inspect", out, "-q").output.splitlines() if "in no row" in line]  # question)
    from augpipe.inspection import _class_table

    counts = {"train": {"before": {"rows": {"a": 1}}, "after": {"rows": {"a": 3}}}}
    for task, line in [("segmentation", "    in no row: b"), ("classification", "    in no row: background, b")]:
        f = {"task": task, "classes": ["background", "a", "b"], "class_counts": counts, "splits": {"train": {}}}
        assert line in _class_table(f), task


@pytest.mark.parametrize("name", OBJECTS)
def test_inspect_shows_the_objects_the_recipe_dropped_by_class(kinds, name, cli):
    out = kinds[name]
    lost = dropped(out)
    assert lost  # planted: the recipe shifts objects out of the image
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert facts["dropped_by"] == {"transforms": lost}
    train = facts["class_counts"]["train"]
    for c, n in train["before"]["objects"].items():  # 2 copies: what each original kept, less what was dropped
        assert train["after"]["objects"].get(c, 0) == 3 * n - lost.get(c, 0)
    line = next(ln for ln in cli("inspect", out, "-q").output.splitlines() if ln.startswith("    transforms"))
    assert re.split(r"\s{2,}", line.strip())[1].startswith(f"{sum(lost.values())} (")
    assert all(f"{c} {n}" in line for c, n in lost.items())


def test_inspect_and_verify_show_a_progress_bar_over_the_rows(kinds, cli):
    out = kinds["coco"]
    total = sum(len(rows) for rows in shard_rows(out).values())
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 0
    for desc in ("inspect", "verify"):
        assert re.search(rf"{desc}:\s+0%.*\b0/{total} ", result.stderr), result.stderr
    quiet = cli("inspect", out, "--verify", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_mask_that_does_not_read_is_left_out_of_the_counts_and_said(kinds, tmp_path, cli):
    out = _copy_tree(kinds["segmentation"], tmp_path / "out")
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    classes = json.loads((out / "_augpipe.json").read_text())["classes"]
    k = next(k for k, row in enumerate(rows) if row["copy"] and held(row, classes))
    lost = held(rows[k], classes)
    rows[k]["annotation"]["bytes"] = b"not a png"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--json", "-q")
    facts = json.loads(result.output)
    assert result.exit_code == 0 and facts["unread_targets"] == 1
    truth = Counter(class_counts(kinds["segmentation"])["train"]["after"]["rows"])
    assert facts["class_counts"]["train"]["after"]["rows"] == dict(truth - lost)
    assert "    not counted: 1 row whose target does not read (--verify lists them)" in cli("inspect", out, "-q").output


@pytest.mark.parametrize("name", KINDS)
def test_a_row_without_its_size_is_listed_not_a_crash(kinds, name, tmp_path, cli):
    out = _copy_tree(kinds[name], tmp_path / "out")
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    width = rows[0]["width"]
    rows[0]["height"] = None
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    verified = cli("inspect", out, "--verify", "-q")
    assert verified.exit_code == 1 and "unexpected" not in verified.output
    assert f"{shard.name} row 0 ({rows[0]['source']}): image is " in verified.output
    assert f"the row says {width}×None" in verified.output
    health = cli("inspect", out, "--fail-on", "annotation_unreadable", "-q")
    assert health.exit_code == 1 and "unexpected" not in health.output
    assert f"the row's size is {width}×None" in health.output


def test_inspect_counts_the_copies_no_transform_changed(folder, tmp_path, cli):
    from augpipe.decode import row_image

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))  # a quarter of copies: neither flip
    rows = pq.read_table(out, columns=["image", "source", "copy"]).to_pylist()
    original = {r["source"]: row_image(r["image"]["bytes"]).astype(int) for r in rows if r["copy"] == 0}
    same = sum(np.abs(row_image(r["image"]["bytes"]) - original[r["source"]]).mean() < 4 for r in rows if r["copy"])
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert 0 < same < len(rows) - len(original) and facts["unchanged"] == same
    text = cli("inspect", out, "-q").output
    assert f"augmented ({same:,} unchanged: no transform fired)" in text


def _expanded(source: Path, tmp_path: Path, val_fraction: float = 0) -> tuple:
    """`source` expanded with flips into tmp_path/out: (out, its first train shard, that shard's
    table and rows), for a test to damage a row and write the shard back."""
    out = tmp_path / "out"
    expand(source, "flips", out, ExpandOptions(val_fraction=val_fraction, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    return out, shard, table, table.to_pylist()


@pytest.mark.parametrize("fmt, damage", [
    ("coco", 7), ("voc", 3), ("yolo", -1), ("coco", -1),
])
def test_a_category_outside_the_classes_is_refused_by_export_before_it_writes(scenes, tmp_path, cli, fmt, damage):
    """A hostile tester's: a box whose category is not one of the dataset's classes was an
    "unexpected error: IndexError" from the COCO and VOC writers, written as it was by YOLO's, and
    -1 went silently to the last class. Export now refuses it in one line naming the image, before
    it writes anything."""
    out, shard, table, rows = _expanded(scenes["coco"], tmp_path)
    k = next(i for i, r in enumerate(rows) if len(r["objects"]["bbox"]) >= 2)
    classes = len(json.loads((out / "_augpipe.json").read_text())["classes"])
    category = classes + damage if damage > 0 else damage
    rows[k]["objects"]["category"][1] = category
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)

    exported = cli("export", out, "--format", fmt, "--out", tmp_path / fmt)
    said = f"{rows[k]['image']['path']}: box 1: category {category} outside the {classes} classes"
    assert exported.exit_code == 2 and said in exported.output and "Traceback" not in exported.output
    assert not (tmp_path / fmt).exists() or not any((tmp_path / fmt).iterdir())


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
@pytest.mark.parametrize("damage, said", [
    ("nan", "box 1 [{x}, {y}, nan, {h}]: not a number"), ("inf", "box 1 [{x}, {y}, inf, {h}]: not a number"),
    ("a null number", "box 1 [{x}, {y}, None, {h}]: not 4 numbers"), ("a null box", "box 1 None: not 4 numbers"),
])
def test_a_box_that_is_not_4_finite_numbers_is_refused_by_export_before_it_writes(scenes, tmp_path, cli, fmt,
                                                                               damage, said):
    """A second hostile tester's: COCO's JSON held NaN and Infinity (not JSON) and YOLO's lines
    "nan", both exiting 0; VOC and a null number failed half-way ("unexpected error"), files
    written. Export refuses what `inspect --verify` lists, before it writes anything."""
    out, shard, table, rows = _expanded(scenes["coco"], tmp_path)
    k = next(i for i, r in enumerate(rows) if len(r["objects"]["bbox"]) >= 2)
    x, y, _, h = rows[k]["objects"]["bbox"][1]
    if damage == "a null box":
        rows[k]["objects"]["bbox"][1] = None
    else:
        rows[k]["objects"]["bbox"][1][2] = {"nan": float("nan"), "inf": float("inf"), "a null number": None}[damage]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)

    verified = cli("inspect", out, "--verify")
    said = said.format(x=x, y=y, h=h)
    assert verified.exit_code == 1 and f"row {k} " in verified.output and said in verified.output
    exported = cli("export", out, "--format", fmt, "--out", tmp_path / fmt)
    assert exported.exit_code == 2 and f"{rows[k]['image']['path']}: {said}" in exported.output
    assert "Traceback" not in exported.output and "unexpected" not in exported.output
    assert not (tmp_path / fmt).exists() or not any((tmp_path / fmt).iterdir())


def test_verify_checks_the_rows_after_one_whose_target_it_cannot_check(scenes, tmp_path, cli):
    """`--verify` gave up on a shard at a row whose box held a null ("unreadable after row 3"), so a
    later row's category outside the classes went unlisted."""
    out, shard, table, rows = _expanded(scenes["coco"], tmp_path)
    rows[3]["objects"]["bbox"][0] = [1.0, None, 3.0, 4.0]
    rows[5]["objects"]["category"] = [9] * len(rows[5]["objects"]["category"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "unreadable" not in result.output
    assert "row 3 " in result.output and "row 5 " in result.output and "category 9 outside" in result.output


def test_a_label_outside_the_classes_is_refused_by_export(folder, tmp_path, cli):
    """The same for a classification row's label: imagefolder indexed its class list with it
    (an IndexError, or -1 the last class's folder)."""
    out, shard, table, rows = _expanded(folder, tmp_path)
    rows[3]["label"] = -1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    exported = cli("export", out, "--format", "imagefolder", "--out", tmp_path / "folder")
    assert exported.exit_code == 2 and f"{rows[3]['image']['path']}: label -1 outside the" in exported.output
    assert not (tmp_path / "folder").exists() or not any((tmp_path / "folder").iterdir())


def test_a_label_in_an_unlabelled_dataset_is_listed_by_verify_and_refused_by_export(tmp_path, cli):
    """An unlabelled dataset (no classes) whose row holds a label: `--verify` said all is well,
    export refused it ("0 classes (0 to -1)"); now both say the same."""
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(4):
        write_image(src / f"im{i}.png", 40, seed=i, fmt=".png")
    out, shard, table, rows = _expanded(src, tmp_path)
    rows[1]["label"] = 0
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    said = "label 0, but the dataset has no classes"
    assert said in cli("inspect", out, "--verify").output
    exported = cli("export", out, "--format", "imagefolder", "--out", tmp_path / "folder")
    assert exported.exit_code == 2 and said in exported.output


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_a_box_that_is_not_finite_is_named_by_the_readers(scenes, tmp_path, bad):
    """A hostile tester's: a NaN box was handed to training by the readers without a recipe (with
    one, albumentations' error named no row), and a null number in a box was an ArrowInvalid."""
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset, loader

    out, shard, table, rows = _expanded(scenes["coco"], tmp_path)
    k = next(i for i, r in enumerate(rows) if i > 2 and len(r["objects"]["bbox"]) >= 2)
    rows[k]["objects"]["bbox"][1][2] = bad
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    named = re.escape(f"{shard.name} row {k}: box 1 holds a number that is not finite")
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train")[k]
    with pytest.raises(DamagedRow, match=named):
        list(loader(ShardDataset(out, "train"), 64, threads=1))
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train", recipe="flips")[k]


@pytest.mark.parametrize("value", [9, -1])
def test_a_category_outside_the_classes_is_named_by_the_readers_and_train(scenes, tmp_path, cli, value):
    """A hostile tester's: the readers gave a category outside the classes to the model (torch's
    own error, or with -1 none: train ran on), and train said "unexpected error: IndexError"."""
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset, ShardIterable, loader

    out, shard, table, rows = _expanded(scenes["coco"], tmp_path)
    k = next(i for i, r in enumerate(rows) if i > 2 and len(r["objects"]["bbox"]) >= 2)
    rows[k]["objects"]["category"][1] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    classes = len(json.loads((out / "_augpipe.json").read_text())["classes"])
    named = re.escape(f"{shard.name} row {k}: box 1: category {value} outside the {classes} classes")
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train")[k]
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train", recipe="flips")[k]
    with pytest.raises(DamagedRow, match=named):
        list(loader(ShardIterable(out, "train"), 8, threads=1))
    assert ShardDataset(out, "train")[k - 1] is not None  # the rows around it read
    trained = cli("train", out, "--task", "detection", "--epochs", "1")
    assert trained.exit_code == 2 and f"row {k}" in trained.output and "unexpected" not in trained.output


@pytest.mark.parametrize("value", [7, -1, None])
def test_a_label_outside_the_classes_is_named_by_the_readers_and_train(folder, tmp_path, cli, value):
    """A second tester's: a stored -1 (what the readers give for "unlabelled") passed every batched
    reader, and a null label in a labelled dataset was read as -1 and made train say the dataset
    is unlabelled."""
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset, ShardIterable, loader

    out, shard, table, rows = _expanded(folder, tmp_path, val_fraction=0.3)
    rows[4]["label"] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    named = re.escape(f"{shard.name} row 4: label {value} outside the")
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train")[4]
    with pytest.raises(DamagedRow, match=named):
        list(loader(ShardDataset(out, "train"), 8, threads=1))
    with pytest.raises(DamagedRow, match=named):
        list(loader(ShardIterable(out, "train"), 8, threads=1))
    assert "row 4 " in cli("inspect", out, "--verify").output
    trained = cli("train", out, "--epochs", "1")
    assert trained.exit_code == 2 and "row 4" in trained.output and "unexpected" not in trained.output


def test_verify_names_the_row_of_a_copy_whose_image_data_was_damaged(folder, tmp_path, cli):
    """A copy's JPEG with a byte flipped in its scan still decodes, partly wrong (libjpeg warns on
    stderr): only the shard's checksum said so, not which row (a new user's)."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(k for k, row in enumerate(rows) if row["copy"])
    rows[k]["image"]["bytes"], warning = _flipped_but_decodable(rows[k]["image"]["bytes"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = cli("inspect", out, "--verify", "--json", "-q")
    facts = json.loads(result.output)
    assert result.exit_code == 1
    named = [p for p in facts["problems"] if p.startswith(f"{shard.name} row {k} ")]
    assert named == [f"{shard.name} row {k} ({rows[k]['source']}): image data is damaged ({warning}): it decodes to "
                     "a partly wrong picture"], facts["problems"]
    assert facts["mend"] == (f"run the expand that made it again, which writes the output anew: augpipe expand "
                             f"{folder} --recipe flips --out {out} --copies 2 --shard-size {256 * 2**20} --format "
                             "imagefolder")
    assert f"  mend      {facts['mend']}" in cli("inspect", out, "--verify", "-q").output


def _flipped_but_decodable(data: bytes) -> tuple[bytes, str]:
    """`data` with the first byte of its scan whose flip makes libjpeg-turbo warn while OpenCV
    still decodes it, and the warning."""
    import simplejpeg

    assert data[:2] == b"\xff\xd8"
    for at in range(data.index(b"\xff\xda") + 16, len(data) - 2):
        damaged = bytearray(data)
        damaged[at] ^= 0x55
        try:
            simplejpeg.decode_jpeg(bytes(damaged))
        except ValueError as exc:
            if cv2.imdecode(np.frombuffer(bytes(damaged), np.uint8), cv2.IMREAD_COLOR) is not None:
                return bytes(damaged), str(exc)
    raise AssertionError("no flip that decodes with a warning")


def test_an_originals_own_jpeg_warning_is_no_damage(tmp_path, cli):
    """An original keeps its source's bytes, libjpeg's warnings and all: not augpipe's damage."""
    from conftest import make_folder

    data = make_folder(tmp_path / "data", per_class=4)
    source = sorted(data.glob("*/*.jpg"))[0]
    jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8))[1].tobytes()
    source.write_bytes(jpeg[:-2] + b"\x00\x00\xff\xd9")  # 2 bytes before the end marker
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    kept = [r for r in _rows(out) if r["copy"] == 0 and r["source"].endswith(source.name)]
    assert kept and kept[0]["image"]["bytes"].endswith(b"\x00\x00\xff\xd9")
    result = cli("inspect", out, "--verify", "-q")
    assert result.exit_code == 0 and "damaged" not in result.output, result.output


def test_a_shard_that_does_not_read_is_left_out_of_the_counts_and_named(folder, tmp_path, cli):
    """The census stopped at it and counted none of its split's later shards (a hostile tester's)."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(shard_size=30_000, val_fraction=0, **QUIET))
    manifest = json.loads((out / "_augpipe.json").read_text())
    train = [s for s in manifest["shards"] if s["split"] == "train"]
    assert len(train) >= 3
    broken = out / train[0]["name"]
    broken.write_bytes(broken.read_bytes()[:100])
    names = manifest["classes"]
    truth = Counter(names[v] for s in train[1:] for v in pq.read_table(out / s["name"], columns=["label"])["label"].to_pylist())
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert facts["unread_shards"] == {train[0]["name"]: train[0]["rows"]}
    assert facts["class_counts"]["train"]["after"]["rows"] == dict(truth)
    text = cli("inspect", out, "-q").output
    assert (f"  unread    1 shard ({train[0]['name']}): {train[0]['rows']} rows left out of the sizes and classes "
            "below; --verify lists the damage") in text


def test_verify_names_an_original_augpipe_re_encoded_whose_data_was_damaged(tmp_path, cli):
    """A grey JPEG's original is augpipe's RGB encoding, not its source's bytes: its damage is
    augpipe's to name, as a copy's (a hostile tester's: every original was exempt)."""
    from PIL import Image

    from conftest import make_folder

    data = make_folder(tmp_path / "data", per_class=4)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40), np.uint8), "L").save(data / "cat" / "grey.jpg")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    k = next(k for k, row in enumerate(rows) if row["copy"] == 0 and row["source"] == "cat/grey.jpg")
    rows[k]["image"]["bytes"], warning = _flipped_but_decodable(rows[k]["image"]["bytes"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    problems = json.loads(cli("inspect", out, "--verify", "--json", "-q").output)["problems"]
    assert f"{shard.name} row {k} (cat/grey.jpg): image data is damaged ({warning}): it decodes to a partly wrong " \
           "picture" in problems, problems


@pytest.mark.parametrize("column, value", [("copy", None), ("width", "wide")])
def test_a_shard_whose_columns_are_of_another_type_is_named_not_a_crash(folder, tmp_path, cli, column, value):
    """inspect crashed ('unexpected error: TypeError') on a shard rewritten with a column of nulls
    or strings (a hostile tester's): it is a shard that does not read, counted out and named."""
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(shard_size=30_000, val_fraction=0, **QUIET))
    shards = sorted(out.glob("train-*.parquet"))
    table = pq.read_table(shards[0])
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array([value] * table.num_rows)), shards[0])
    result = cli("inspect", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["unread_shards"] == {shards[0].name: table.num_rows}


def test_a_label_column_rewritten_as_text_is_named_by_the_readers_verify_and_train(folder, tmp_path, cli):
    """A hostile tester's: ShardDataset raised a raw TypeError ('<' between str and int)."""
    from augpipe.errors import DamagedRow
    from augpipe.readers import ShardDataset, ShardIterable, loader

    out, shard, table, rows = _expanded(folder, tmp_path, val_fraction=0.3)
    texts = pa.array([None if r["label"] is None else str(r["label"]) for r in rows], pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", texts), shard)
    named = re.escape(f"{shard.name} row ") + r"\d+: label '\d+' is not a class index"
    with pytest.raises(DamagedRow, match=named):
        ShardDataset(out, "train")[0]
    for reader in (ShardDataset(out, "train"), ShardIterable(out, "train")):
        with pytest.raises(DamagedRow, match=named):
            list(loader(reader, 8, threads=1))
    verified = cli("inspect", out, "--verify")
    assert verified.exit_code == 1 and "is not a class index" in verified.output
    trained = cli("train", out, "--epochs", "1")
    assert trained.exit_code == 2 and "is not a class index" in trained.output and "unexpected" not in trained.output


def test_rows_whose_label_is_no_class_are_said_beside_the_class_table(folder, tmp_path, cli):
    """A label edited to no class (null, past the classes, negative) was left out of inspect's
    table without a word: the rows of each class summed to fewer than the split's rows."""
    out, shard, table, rows = _expanded(folder, tmp_path)
    labels = [r["label"] for r in rows]
    labels[:3] = [None, 99, -1]
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int64())), shard)
    said = cli("inspect", out)
    assert said.exit_code == 0
    assert "not a class: -1 in 1 row, 99 in 1 row, None in 1 row (--verify lists them)" in said.output
    facts = json.loads(cli("inspect", out, "--json", "-q").output)
    assert {k: facts["class_counts"]["train"]["after"]["rows"][k] for k in ("None", "99", "-1")} == \
        {"None": 1, "99": 1, "-1": 1}


@pytest.mark.parametrize("change", ["label", "rows"])
def test_verify_checks_the_manifests_counts_against_the_rows(folder, tmp_path, cli, change):
    """A shard rewritten with a row's label changed (or rows dropped), its checksum, size and rows
    stamped again in the manifest, passed --verify, the counts saying a 24, b 18 where the rows
    said a 23, b 19 (a hostile tester's)."""
    import hashlib

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = sorted(out.glob("train-*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    if change == "label":
        rows[0]["label"] = 1 - rows[0]["label"]
    else:
        rows = rows[3:]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    manifest = json.loads((out / "_augpipe.json").read_text())
    for s in manifest["shards"]:
        if s["name"] == shard.name:
            s.update(sha256=hashlib.sha256(shard.read_bytes()).hexdigest(), bytes=shard.stat().st_size, rows=len(rows))
    (out / "_augpipe.json").write_text(json.dumps(manifest))
    result = cli("inspect", out, "--verify", "--json", "-q")
    problems = json.loads(result.output)["problems"]
    assert result.exit_code == 1 and any(p.startswith("split train: by class, read: ") for p in problems), problems
    assert any("rows read, the manifest's counts say" in p for p in problems) == (change == "rows")
    assert cli("inspect", tmp_path / "out", "--verify", "-q").exit_code == 1
