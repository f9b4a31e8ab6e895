"""The sanity trainer (augpipe/training/run.py): `augpipe train` for every task, its checks, its output
folder and what a hostile user tries. Needs the train extra."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import augpipe.training.run as train_module  # noqa: E402
from augpipe import ExpandOptions, expand  # noqa: E402
from augpipe.errors import SourceError, UsageError  # noqa: E402
from augpipe.options import TrainOptions  # noqa: E402
from augpipe.readers import ShardDataset  # noqa: E402
from augpipe.store import open_store  # noqa: E402
from augpipe.training.model import DEFAULT_ARCH, layer_table, memory_bytes  # noqa: E402
from augpipe.training.run import Split, check_dataset, check_memory, train  # noqa: E402
from augpipe.training.bootstrap import mean_scorer, paired_interval, verdict  # noqa: E402
from conftest import (ROOT, duplicated_folder, expanded, faint_colours, make_folder, make_scenes, one_line,  # noqa: E402
                      scene_image, write_image)

QUIET = dict(progress=False, workers=1)


@pytest.fixture(scope="module")
def first_model(colours, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first")
    train(colours, out, TrainOptions(epochs=1, size=16, progress=False, log=lambda *a: None))
    return out / "model.pt"


class Planted:
    """A pickle that creates a file when loaded: what a crafted model.pt could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


HUGE = "c100000k3-r-c{classes}k1-gap"


def empty_dataset(out: Path) -> Path:
    """What expanding a folder of unreadable images gives: a manifest and shards without rows."""
    from augpipe.manifest import Manifest
    from augpipe.row import row_spec
    from augpipe.shards import ShardWriter
    from augpipe.targets import kind_for

    out.mkdir()
    store = open_store(out)
    shards = []
    for split in ("train", "validation"):
        name = f"{split}-00000-of-00001.parquet"
        writer = ShardWriter(name, out, row_spec(kind_for("classification"), ["a", "b"]))
        rows, sha256, size = writer.finish()
        writer.publish(store)
        shards.append({"name": name, "split": split, "rows": rows, "bytes": size, "sha256": sha256})
    Manifest(classes=["a", "b"], labelled=True, shards=shards, recipe={"name": "x"},
             counts={s["split"]: {"rows": 0} for s in shards}).save(store)
    return out


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Boxes and discs, 1 to 3 a scene, COCO with polygons (so instance masks too)."""
    root = tmp_path_factory.mktemp("scenes")
    return expanded(make_scenes(root / "data", n=24, fmt="coco"), root / "out")


@pytest.fixture(scope="module")
def seg_scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg")
    return expanded(make_scenes(root / "data", n=16, fmt="masks"), root / "out")


@pytest.fixture(scope="module")
def box_scenes(tmp_path_factory) -> Path:
    """YOLO boxes: no instance masks."""
    root = tmp_path_factory.mktemp("yolo")
    return expanded(make_scenes(root / "data", n=8, fmt="yolo"), root / "out")


@pytest.fixture(scope="module")
def one_object(tmp_path_factory) -> Path:
    """The scenes' COCO with only each image's first object kept."""
    root = tmp_path_factory.mktemp("one")
    data = make_scenes(root / "data", n=12, fmt="coco")
    path = data / "annotations" / "instances_default.json"
    coco = json.loads(path.read_text())
    first = {}
    for a in coco["annotations"]:
        first.setdefault(a["image_id"], a)
    coco["annotations"] = list(first.values())
    path.write_text(json.dumps(coco))
    return expanded(data, root / "out")


QUICK = ["--epochs", "2", "--size", "32", "--batch-size", "16", "-q"]


def side_scenes(root: Path, n: int, size=(64, 48), seed: int = 0) -> Path:
    """COCO scenes whose 1 or 2 objects sit in the left or the right third: a box mirrored about
    the vertical centre line never overlaps its object."""
    rng = np.random.default_rng(seed)
    w, h = size
    images, annotations = [], []
    (root / "default").mkdir(parents=True)
    for i in range(n):
        objects = []
        for side in rng.permutation(2)[:int(rng.integers(1, 3))]:
            c, bw, bh = int(rng.integers(0, 2)), int(rng.integers(10, 17)), int(rng.integers(10, 17))
            x = int(rng.integers(1, w // 3 - bw // 2)) if side == 0 else int(rng.integers(2 * w // 3 - bw // 2, w - bw - 1))
            y = int(rng.integers(1, h - bh - 1))
            if c == 0:
                poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            else:
                pts = cv2.ellipse2Poly((x + bw // 2, y + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 15)
                poly = pts.reshape(-1).tolist()
                x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
                bw, bh = int(pts[:, 0].max()) - x, int(pts[:, 1].max()) - y
            objects.append((c, [float(x), float(y), float(bw), float(bh)], [float(v) for v in poly]))
        name = f"s{i:03d}.png"
        cv2.imwrite(str(root / "default" / name), cv2.cvtColor(scene_image(objects, w, h, rng), cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        annotations += [{"id": len(annotations) + k + 1, "image_id": i + 1, "category_id": c + 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0} for k, (c, box, _) in enumerate(objects)]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}))
    return root


def mirror_training_boxes(out: Path) -> None:
    """What a flip that forgot the boxes leaves: every training box at W − x − w, the images as they were."""
    import pyarrow as pa

    for path in out.glob("train-*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for r in rows:
            r["objects"]["bbox"] = [[r["width"] - x - w, y, w, h] for x, y, w, h in r["objects"]["bbox"]]
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def without_objects(out: Path, split: str) -> None:
    """Every row of the split's shards left without its objects."""
    import pyarrow as pa

    for path in out.glob(f"{split}-*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for r in rows:
            r["objects"] = {k: [] for k in r["objects"]}
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def test_train_refuses_identical_content_in_training_and_validation(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from augpipe.options import TrainOptions
    from augpipe.training.run import train

    data = duplicated_folder(tmp_path / "data")
    out = tmp_path / "out"
    expand(data, "flips", out, ExpandOptions(val_fraction=0.5, split_by="path", **QUIET))
    with pytest.raises(SourceError, match="identical copies in training"):
        train(out, tmp_path / "run", TrainOptions(epochs=1, progress=False, log=lambda line: None))


def test_leakage_no_validation_and_one_class_are_refused():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 1])
    a = Split(x, y, ["cat/1.jpg", "dog/2.jpg"], [0, 0])
    b = Split(x, y, ["cat/1.jpg", "dog/3.jpg"], [0, 0])
    with pytest.raises(SourceError, match="leakage: 1 validation source also"):
        check_dataset(a, b, ["cat", "dog"])
    with pytest.raises(SourceError, match="no validation split"):
        check_dataset(a, None, ["cat", "dog"])
    with pytest.raises(SourceError, match="at least two"):
        check_dataset(a, Split(x, y, ["x", "y"], [0, 0]), ["cat"])


def test_train_refuses_leaked_shards_from_the_cli(cli, colours, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(colours, leaky)
    val = next(leaky.glob("validation-*.parquet"))
    shutil.copy(next(leaky.glob("train-*.parquet")), val)
    result = cli("train", leaky, "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "leakage" in result.output and "Traceback" not in result.output


def test_a_short_run_learns_and_writes_its_outputs(cli, colours, tmp_path):
    out = tmp_path / "run"
    result = cli("train", colours, "--epochs", "3", "--out", out, "-q", "--size", "24", "--compare")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_val_acc"] > metrics["majority_baseline"] + 0.3
    assert len(metrics["history"]) == 3 and "lift" in metrics["compare"]
    assert result.output.count("augmentation lift") == 1
    for name in ("model.pt", "curves.png", "confusion.png"):
        assert (out / name).is_file()
    curves = cv2.imread(str(out / "curves.png"))
    assert curves is not None and curves.shape[0] > 100 and curves.std() > 5
    assert "augmentation lift" in result.output and "always guessing" in result.output
    assert "layer" in result.output and "(24 − 3 + 2·1)/1 + 1 = 24" in result.output


def test_compare_on_a_tiny_validation_set_says_it_is_too_small_to_tell(cli, tmp_path):
    data = faint_colours(tmp_path / "tiny", per_class=8)
    result = cli("train", data, "--epochs", "1", "--size", "8", "--compare", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    compare = json.loads((tmp_path / "run" / "metrics.json").read_text())["compare"]
    n = compare["validation_images"]
    assert n < 10 and compare["verdict"] == "too_few_images"
    (line,) = [x for x in result.output.splitlines() if "interval" in x]
    assert f"on {n} validation images" in line and f"one image is {1 / n:.3f} of them" in line
    assert line.endswith("too few validation images to tell (at least 20, better a few hundred)")


def test_a_lift_of_one_image_in_thirty_is_not_distinguishable_from_none():
    e = np.r_[np.ones(20), np.zeros(10)]  # the issue's −0.033: the originals' model gets one image more
    o = e.copy()
    o[25] = 1
    interval = paired_interval(mean_scorer(e), mean_scorer(o), 30)
    compare = {"lift": e.mean() - o.mean(), "interval": interval, "validation_images": 30,
               "verdict": verdict(interval, 30)}
    line = train_module.interval_line(compare)
    assert f"[{interval['low']:+.3f}, +0.000] on 30 validation images" in line and interval["low"] < -0.03
    assert "one image is 0.033 of them): not distinguishable from no lift, the validation set is too small" in line
    assert line.endswith("; about 68 would be needed to tell a lift of 0.033 from none, were it to hold")  # 30·(0.05/0.033)²


def test_two_models_at_the_ceiling_or_at_zero_are_said_to_show_nothing():
    for score, words in ((1, "at the ceiling"), (0, "neither learned")):
        e = np.full(40, float(score))
        interval = paired_interval(mean_scorer(e), mean_scorer(e), 40)
        compare = {"lift": 0.0, "interval": interval, "validation_images": 40, "verdict": verdict(interval, 40)}
        assert words in train_module.interval_line(compare, (float(score), float(score)))
        assert "score alike on every resample" in train_module.interval_line(compare)


def test_seeds_repeat_both_runs_and_report_the_lifts_spread(tmp_path):
    data = faint_colours(tmp_path / "faint")
    quiet = dict(epochs=2, size=8, compare=True, progress=False, log=lambda *a: None, device="cpu")
    spread = train(data, tmp_path / "a", TrainOptions(**quiet, seed=3, seeds=2))["compare"]["seeds"]
    alone = train(data, tmp_path / "b", TrainOptions(**quiet, seed=4))["compare"]["lift"]
    assert spread["seeds"] == [3, 4] and spread["lifts"][1] == alone  # its second run is --seed 4's
    assert spread["mean"] == pytest.approx(np.mean(spread["lifts"])) and spread["sd"] == pytest.approx(
        abs(spread["lifts"][0] - spread["lifts"][1]) / np.sqrt(2))
    line = train_module.seeds_line(spread)
    assert line.startswith("  over 2 seeds (--seed 3 to 4): lifts ") and f"{alone:+.3f}" in line
    with pytest.raises(UsageError, match="--seeds repeats --compare's two runs"):
        train(data, tmp_path / "c", TrainOptions(**{**quiet, "compare": False}, seeds=2))


def test_training_is_repeatable_on_the_cpu(colours, tmp_path):
    opts = dict(epochs=1, size=16, progress=False, log=lambda *a: None, device="cpu")
    a = train(colours, tmp_path / "a", TrainOptions(**opts))
    b = train(colours, tmp_path / "b", TrainOptions(**opts))
    assert a["history"][0]["val_loss"] == b["history"][0]["val_loss"]


def test_freeze_features_leaves_frozen_weights_bit_identical(colours, tmp_path):
    quiet = dict(progress=False, log=lambda *a: None, size=16)
    lines = []
    train(colours, tmp_path / "first", TrainOptions(epochs=1, **{**quiet, "log": lines.append}))
    assert any("1 epoch (" in line for line in lines)
    before = torch.load(tmp_path / "first" / "model.pt", weights_only=True)["state_dict"]
    train(colours, tmp_path / "second", TrainOptions(epochs=2, init=str(tmp_path / "first" / "model.pt"),
                                                     freeze="features", **quiet))
    after = torch.load(tmp_path / "second" / "model.pt", weights_only=True)["state_dict"]
    head = max(k.split(".")[0] for k in before if k.endswith("weight"))  # the last conv: the classifier
    for key in before:
        if key.startswith(f"{head}."):
            assert not torch.equal(before[key], after[key]), key
        else:
            assert torch.equal(before[key], after[key]), key


def test_init_with_another_class_count_makes_a_new_classifier(colours, tmp_path, shards):
    quiet = dict(progress=False, log=lambda *a: None, size=32)
    train(colours, tmp_path / "three", TrainOptions(epochs=1, **quiet))  # 3 classes
    result = train(shards, tmp_path / "two", TrainOptions(epochs=1, init=str(tmp_path / "three" / "model.pt"),
                                                          freeze="features", **quiet))  # 2 classes
    assert result["classes"] == ["cat", "dog"]


def test_training_at_chance_warns(tmp_path):
    for name in ("a", "b"):  # two classes of identical blank images: nothing to learn
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(24):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"), np.zeros((16, 16, 3), np.uint8) + (i % 2))
    expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(workers=1, progress=False, val_fraction=0.25))
    lines = []
    result = train(tmp_path / "out", tmp_path / "run", TrainOptions(epochs=3, size=16, progress=False,
                                                                    log=lines.append))
    assert "stays at chance" in result["warning"] and any("warning: training accuracy" in x for x in lines)


def test_train_without_torch_says_how_to_install(cli, monkeypatch, colours):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    result = cli("train", colours)
    assert result.exit_code == 2 and "pip install 'augpipe[train]'" in result.output


def test_our_checkpoint_is_plain_data(first_model):
    ckpt = torch.load(first_model, weights_only=True)
    assert ckpt["classes"] == ["blue", "green", "red"] and ckpt["size"] == 16 and isinstance(ckpt["mean"], float)


def test_a_crafted_checkpoint_runs_nothing(cli, colours, first_model, tmp_path):
    marker = tmp_path / "planted"
    ckpt = torch.load(first_model, weights_only=True)
    torch.save({**ckpt, "extra": Planted(marker)}, tmp_path / "model.pt")
    result = cli("train", colours, "--init", tmp_path / "model.pt", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and not marker.exists()
    assert "refused" in one_line(result.output) and "would call io.open" in result.output
    torch.load(tmp_path / "model.pt", weights_only=False)
    assert marker.exists()  # the file does what it says: loading it the old way ran it
    torch.save({"weights": ckpt["state_dict"]}, tmp_path / "other.pt")
    result = cli("train", colours, "--init", tmp_path / "other.pt", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "not a model.pt from augpipe train" in one_line(result.output)
    torch.save({**ckpt, "arch": "c8k3p1-r-c{classes}k1-gap"}, tmp_path / "lies.pt")
    result = cli("train", colours, "--init", tmp_path / "lies.pt", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "do not fit its architecture" in result.output.strip().splitlines()[-1]
    (tmp_path / "junk.pt").write_text("hello")
    result = cli("train", colours, "--init", tmp_path / "junk.pt", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "not a model.pt torch can read (" in one_line(result.output)


def test_memory_is_estimated_and_a_huge_model_refused_before_allocating(cli, colours, tmp_path, monkeypatch):
    rows = layer_table(HUGE, 32, 3)
    assert memory_bytes(rows, 32, 64) > 50e9  # 100,000 channels of 30×30, a batch of 64
    monkeypatch.setattr(train_module, "available_memory", lambda device: 4 * 10**9)
    for name in ("build_model", "load_split"):
        monkeypatch.setattr(train_module, name, lambda *a, **k: pytest.fail("allocated before the memory check"))
    result = cli("train", colours, "--arch", HUGE, "--out", tmp_path / "run", "-q")
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert line.startswith("augpipe: error: memory: about 69,171 MB for a batch of 64") and "4,000 MB available" in line
    assert "--batch-size" in line and "memory: about 69,171 MB for a batch of 64" in result.output  # the table's line
    check_memory(layer_table(DEFAULT_ARCH, 32, 3), 32, 64, torch.device("cpu"), 10_000)  # the default fits


def test_freeze_needs_init(cli, colours, tmp_path):
    result = cli("train", colours, "--freeze", "features", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "--freeze needs --init" in one_line(result.output)


def test_init_takes_arch_and_size_from_the_checkpoint(cli, colours, first_model, tmp_path):
    for flag, value in (("--size", "24"), ("--arch", "c8k3p1-r-c{classes}k1-gap")):
        result = cli("train", colours, "--init", first_model, flag, value, "--out", tmp_path / "run", "-q")
        assert result.exit_code == 2 and "differs from the --init model's" in one_line(result.output), flag
    lines = []
    train(colours, tmp_path / "run", TrainOptions(epochs=1, init=str(first_model), progress=False, log=lines.append))
    assert f"init: --arch {DEFAULT_ARCH} and --size 16 from {first_model}" in lines
    assert any("3 classes, 1 epoch (" in line for line in lines)
    lines.clear()
    train(colours, tmp_path / "run", TrainOptions(epochs=1, init=str(first_model), size=16, arch=DEFAULT_ARCH,
                                                  progress=False, log=lines.append))
    assert not any(" from " in line for line in lines)  # given and the same: nothing to say


def test_train_help_says_what_seed_and_batch_size_do(cli):
    text = " ".join(cli("train", "--help").output.replace("│", " ").split())
    assert "Seeds the initial weights, the batch order and dropout" in text and "Images per optimiser step" in text
    assert "byte-identical shards" not in text


def test_a_dataset_without_rows_is_one_line(cli, tmp_path):
    result = cli("train", empty_dataset(tmp_path / "empty"), "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the training split has no rows" in result.output.strip().splitlines()[-1]
    with pytest.raises(SourceError, match="validation split has no rows"):
        x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
        check_dataset(Split(x, torch.tensor([0]), ["a/1"], [0]), Split(x[:0], torch.tensor([]), [], []), ["a", "b"])


@pytest.mark.parametrize("task, data, needles", [
    ("localisation", "scenes", ["always predicting the mean training box and '", "IoU ≥ 0.5 on",
                                "with several objects: scored on the largest box"]),
    ("detection", "scenes", ["validation mAP@0.5", "predicting nothing scores 0.000", "AP@0.5 per class: box"]),
    ("segmentation", "seg_scenes", ["validation mean IoU", "always predicting 'background' scores",
                                    "IoU per class: background"]),
    ("segmentation", "scenes", ["IoU per class: background", "box", "disc"]),  # from the instance masks
])
def test_each_trainer_runs_and_writes_its_metrics_and_plots(cli, request, tmp_path, task, data, needles):
    out = tmp_path / "run"
    result = cli("train", request.getfixturevalue(data), "--task", task, "--compare", "--out", out, *QUICK)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and len(metrics["history"]) == 2 and "lift" in metrics["compare"]
    assert metrics["compare"]["originals"][-1]["step"] == metrics["compare"]["steps"] == metrics["history"][-1]["step"]
    for name in ("model.pt", "metrics.json", "curves.png", "predictions.png"):
        assert (out / name).is_file(), name
        assert str(out / name) in result.output
    for name in ("curves.png", "predictions.png"):
        picture = cv2.imread(str(out / name))
        assert picture is not None and picture.shape[0] > 100 and picture.std() > 5, name
    assert not (out / "confusion.png").exists()
    assert result.output.count("augmentation lift: validation") == 1
    for needle in needles:
        assert needle in result.output, needle
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["task"] == task and ckpt["size"] == 32
    if task == "segmentation" and data == "scenes":
        assert ckpt["classes"] == ["background", "box", "disc"]


def test_the_task_comes_from_the_dataset(cli, scenes, one_object, seg_scenes, tmp_path):
    lines = []
    opts = dict(epochs=1, size=32, progress=False, log=lines.append)
    assert train(scenes, tmp_path / "a", TrainOptions(**opts))["task"] == "detection"
    assert any(line.startswith("task: detection (a detection dataset with up to") for line in lines)
    lines.clear()
    result = train(one_object, tmp_path / "b", TrainOptions(**opts))
    assert result["task"] == "localisation" and "several" not in " ".join(lines)
    assert "task: localisation (a detection dataset with at most one object an image; --task overrides)" in lines
    assert train(seg_scenes, tmp_path / "c", TrainOptions(**opts))["task"] == "segmentation"


@pytest.mark.parametrize("data, task, needle", [
    ("box_scenes", "segmentation", "--task segmentation: this detection dataset has no masks"),
    ("colours", "detection", "--task detection: this classification dataset has no boxes"),
    ("colours", "localisation", "no boxes"),
    ("colours", "segmentation", "no masks"),
    ("seg_scenes", "detection", "this segmentation dataset has no boxes"),
    ("scenes", "classification", "has no image labels: use --task localisation or detection"),
    ("scenes", "boxes", "--task is one of auto, classification, localisation, detection, segmentation"),
])
def test_a_task_the_dataset_cannot_train_is_one_line(cli, request, tmp_path, data, task, needle):
    result = cli("train", request.getfixturevalue(data), "--task", task, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and needle in one_line(result.output)
    assert not (tmp_path / "run").exists()


def test_init_and_freeze_are_for_classification(cli, scenes, first_model, tmp_path):
    result = cli("train", scenes, "--init", first_model, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "--init and --freeze are for classification" in one_line(result.output)


def test_boxes_mirrored_wrongly_score_visibly_worse(tmp_path):
    right = expanded(side_scenes(tmp_path / "data", 48), tmp_path / "right")
    wrong = tmp_path / "wrong"
    shutil.copytree(right, wrong)
    mirror_training_boxes(wrong)
    opts = dict(task="detection", epochs=6, size=32, batch_size=16, progress=False, log=lambda *a: None)
    good = train(right, tmp_path / "good", TrainOptions(**opts))
    bad = train(wrong, tmp_path / "bad", TrainOptions(**opts))
    assert good["best_val_map"] >= 0.6, good["history"]
    assert bad["best_val_map"] <= 0.3 and good["final_val_map"] - bad["final_val_map"] >= 0.5, bad["history"]


@pytest.mark.parametrize("task", ["segmentation", "detection", "localisation"])
def test_every_box_trainer_takes_empty_images_one_class_and_mixed_sizes(cli, sparse, tmp_path, task):
    out = tmp_path / "run"
    result = cli("train", sparse, "--task", task, "--out", out, "--epochs", "1", "--size", "32", "-q")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == (["background", "box"] if task == "segmentation" else ["box"])
    if task == "localisation":
        assert "training images without an object left out" in result.output
        assert metrics["counts"]["validation"]["without_object"] > 0


def test_classification_takes_images_of_mixed_sizes(cli, tmp_path):
    data = make_folder(tmp_path / "data", per_class=8, size=40)
    for i, path in enumerate(sorted((data / "dog").iterdir())[:4]):
        write_image(path, size=24 + 8 * i, seed=i)
    out = expanded(data, tmp_path / "out")
    assert len({tuple(img.shape) for img, _ in ShardDataset(out, "train")}) > 1
    result = cli("train", out, "--out", tmp_path / "run", "--epochs", "1", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["task"] == "classification"


def test_train_refuses_a_folder_it_did_not_write(cli, colours, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"acc": 0.93}')
    (mine / "model.pt").write_bytes(b"my weights")
    result = cli("train", colours, "--out", mine, "--epochs", "1", "-q")
    assert result.exit_code == 2
    assert f"--out {mine} holds files augpipe train did not write (metrics.json, model.pt)" in one_line(result.output)
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.json", "model.pt"]
    assert (mine / "model.pt").read_bytes() == b"my weights"
    (tmp_path / "file").write_text("x")
    result = cli("train", colours, "--out", tmp_path / "file", "--epochs", "1", "-q")
    assert result.exit_code == 2 and "exists and is not a folder" in one_line(result.output)


def test_a_rerun_into_its_own_folder_removes_the_earlier_run_s_files(cli, colours, sparse, tmp_path):
    out = tmp_path / "run"
    first = cli("train", sparse, "--task", "detection", "--out", out, "--epochs", "1", "--size", "16", "-q")
    assert first.exit_code == 0, first.output
    assert (out / "predictions.png").is_file() and (out / ".augpipe-train").is_file()
    (out / "notes.txt").write_text("the user's, beside the run")
    second = cli("train", colours, "--out", out, "--epochs", "1", "--size", "16", "-q")
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in out.iterdir()) == [".augpipe-train", "confusion.png", "curves.png",
                                                     "metrics.json", "model.pt", "notes.txt"]
    marker = json.loads((out / ".augpipe-train").read_text())
    assert marker["complete"] and marker["files"] == ["confusion.png", "curves.png", "metrics.json", "model.pt"]
    assert json.loads((out / "metrics.json").read_text())["task"] == "classification"


def test_a_run_of_an_earlier_augpipe_is_train_s_folder_too(cli, colours, sparse, tmp_path):
    out = tmp_path / "run"
    assert cli("train", sparse, "--task", "segmentation", "--out", out, "--epochs", "1", "--size", "16",
               "-q").exit_code == 0
    (out / ".augpipe-train").unlink()  # as augpipe 0.3 left it
    result = cli("train", colours, "--out", out, "--epochs", "1", "--size", "16", "-q")
    assert result.exit_code == 0, result.output
    assert not (out / "predictions.png").exists() and (out / "confusion.png").is_file()
    (out / ".augpipe-train").write_text("not json")
    result = cli("train", colours, "--out", out, "--epochs", "1", "--size", "16", "-q")
    assert result.exit_code == 2 and ".augpipe-train cannot be read" in one_line(result.output)


@pytest.mark.parametrize("how, code, word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_during_train_says_train_s_own_sentence(colours, tmp_path, how, code, word):

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "augpipe", "train", str(colours), "--out", str(out),
                             "--epochs", "100000", "--size", "16", "-q"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        started = next((line for line in proc.stdout if line.startswith("training on")), None)
        assert started is not None, proc.stderr.read()
        os.killpg(proc.pid, getattr(signal, how))  # SIGINT as a terminal sends it: to the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    assert err.strip().splitlines() == [
        f"augpipe: error: {word}: train writes model.pt and its metrics only at the end of a run, so nothing of "
        "this one is kept; run the same command again to train from the start"], err
    assert not out.exists()


@pytest.mark.parametrize("seed", [2**64, -2**63 - 1, -1])  # -1: as --help says, 0 to 2^64 - 1 (ran, a hostile tester's)
def test_a_seed_beyond_64_bits_is_one_line(cli, colours, tmp_path, seed):
    result = cli("train", colours, "--seed", seed, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and f"--seed {seed}: torch's seeds are 64 bits" in one_line(result.output)


@pytest.mark.parametrize("batch, where", [("4", "the loss at epoch 1, step 2"),  # one step of 1e30 is enough
                                          ("64", "the validation loss after epoch 1")])  # one step an epoch
def test_a_loss_that_is_not_finite_stops_training_and_writes_nothing(cli, sparse, tmp_path, batch, where):
    out = tmp_path / "run"
    result = cli("train", sparse, "--task", "detection", "--lr", "1e30", "--epochs", "3", "--size", "16",
                 "--batch-size", batch, "--out", out, "-q")
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"augpipe: error: training diverged: {where} is nan"), last
    assert last.endswith("nothing was written: try a lower --lr than 1e+30")
    assert not out.exists()


def test_a_dataset_without_boxes_is_one_line_for_every_box_task(cli, sparse, tmp_path):
    empty = tmp_path / "empty"
    shutil.copytree(sparse, empty)
    without_objects(empty, "train")
    without_objects(empty, "validation")
    for task in ("auto", "detection", "localisation"):
        result = cli("train", empty, "--task", task, "--out", tmp_path / "run", "-q")
        assert result.exit_code == 2
        named = "" if task == "auto" else f"--task {task}: "
        assert f"error: {named}this detection dataset has no boxes: none of its training or validation images " \
               "has an object" in one_line(result.output)
    assert not (tmp_path / "run").exists()


def test_localisation_says_when_a_split_has_no_object_at_all(cli, sparse, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sparse, data)
    without_objects(data, "validation")
    rows = len(ShardDataset(data, "validation"))
    result = cli("train", data, "--task", "localisation", "--out", tmp_path / "run", "--size", "16", "-q")
    assert result.exit_code == 2
    assert (f"localisation: none of the {rows} validation images has an object (images without one are left out)"
            in result.output.strip().splitlines()[-1])


def test_a_keypoints_dataset_trains_its_boxes_by_what_its_kind_feeds(tmp_path):
    """The trainers know tasks, not kinds: keypoints' objects have boxes, so auto picks
    localisation or detection, and segmentation and classification are refused in one line."""
    from keypointed import coco_keypoints

    from augpipe.dataset import open_dataset
    from augpipe.errors import UsageError

    out = tmp_path / "ds"
    expand(coco_keypoints(tmp_path / "src"), "flips", out, ExpandOptions(workers=1, progress=False, copies=0))
    ds = open_dataset(out)
    task, why = train_module.choose_task(ds, None)
    assert task in ("localisation", "detection") and "a keypoints dataset with" in why
    for asked in ("segmentation", "classification"):
        with pytest.raises(UsageError, match=f"--task {asked}: this keypoints dataset has no"):
            train_module.choose_task(ds, asked)


def test_a_clear_loss_is_called_one_and_points_to_seeds():
    e = np.r_[np.ones(150), np.zeros(150)]  # 300 images: the originals' model gets 40 more right
    o = e.copy()
    o[150:190] = 1
    interval = paired_interval(mean_scorer(e), mean_scorer(o), 300)
    compare = {"lift": e.mean() - o.mean(), "interval": interval, "validation_images": 300,
               "verdict": verdict(interval, 300)}
    line = train_module.interval_line(compare)
    assert interval["high"] < 0 and "augmentation hurt, by more than the choice of validation images" in line
    assert line.endswith("(training's own randomness is not in it: --seeds N repeats both runs)")
    assert not train_module.interval_line({**compare, "seeds": {}}).endswith("repeats both runs)")


def _damaged(dataset: Path, tmp_path: Path, column: str, row: int, data: bytes) -> tuple[Path, dict]:
    """A copy of `dataset` whose last train shard's `row` holds `data` in `column` (struct<bytes,
    path>); (the copy, that shard's manifest entry)."""
    import pyarrow as pa

    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    shard = [s for s in json.loads((out / "_augpipe.json").read_text())["shards"] if s["split"] == "train"][-1]
    table = pq.read_table(out / shard["name"])
    cells = table.column(column).combine_chunks()
    stored = cells.field("bytes").to_pylist()
    stored[row] = data
    changed = pa.StructArray.from_arrays([pa.array(stored, pa.binary()), cells.field("path")], ["bytes", "path"])
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, changed), out / shard["name"])
    return out, shard

def test_a_row_that_does_not_decode_is_named_by_its_shard_and_row(cli, colours, tmp_path):
    """train reads each split whole: a damaged row is named as the readers and inspect --verify
    name it (its shard, its row there), where it said "train row 386" of the split read whole."""
    out, shard = _damaged(colours, tmp_path, "image", 3, b"not an image")
    result = cli("train", out, "--epochs", "1", "--out", tmp_path / "run", "-q")
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and last.startswith("augpipe: error: ") and "Traceback" not in result.output
    assert f"{shard['name']} row 3: image does not decode" in last


def test_a_mask_that_does_not_decode_is_named_by_its_shard_and_row(cli, seg_scenes, tmp_path):
    """A segmentation row's mask PNG garbled: train names it, exit 2, where it said "unexpected
    error: SkipInput: mask annotation is not a readable image" (exit 3; a hostile tester's finding)."""
    out, shard = _damaged(seg_scenes, tmp_path, "annotation", 1, b"not a png")
    result = cli("train", out, "--epochs", "1", "--out", tmp_path / "run", "-q")
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and last.startswith("augpipe: error: ") and "Traceback" not in result.output
    assert f"{shard['name']} row 1: mask annotation is not a readable image" in last


def test_training_says_which_classes_validation_holds_none_of(tmp_path):
    """A new user's: validation held no image of one class, and train scored it, and a baseline of
    always guessing that class, without a word."""
    for name, (split, n) in {"a": ("train", 8), "b": ("train", 8), "c": ("train", 8)}.items():
        for i in range(n):
            write_image(tmp_path / "data" / split / name / f"{i}.png", size=16, seed=ord(name) * 100 + i)
    for name in ("a", "b"):
        write_image(tmp_path / "data" / "val" / name / "v.png", size=16, seed=ord(name) * 100 + 50)
    expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(**QUIET))
    lines = []
    result = train(tmp_path / "out", tmp_path / "run", TrainOptions(epochs=1, size=16, progress=False, log=lines.append))
    said = "validation holds no row of 1 class (c): the accuracies below say nothing of it"
    assert result["validation_warning"] == said and f"warning: {said}" in lines
    shutil.rmtree(tmp_path / "data" / "train" / "c")
    expand(tmp_path / "data", "flips", tmp_path / "out2", ExpandOptions(**QUIET))
    assert "validation_warning" not in train(tmp_path / "out2", tmp_path / "run2",
                                             TrainOptions(epochs=1, size=16, progress=False, log=lambda *a: None))


def test_a_segmentation_model_no_better_than_the_baseline_is_warned_of():
    """A new user's 2 epochs scored exactly always predicting the background, and nothing said so."""
    from augpipe.training.run import _no_better_than_baseline

    result = {"task": "segmentation", "best_val_miou": 0.221, "baseline": {"class": "background", "mean_iou": 0.221}}
    warning = _no_better_than_baseline(result)
    assert warning.startswith("the best mean IoU (0.221) is no better than always predicting 'background' (0.221)")
    assert _no_better_than_baseline({**result, "best_val_miou": 0.3}) is None
    assert _no_better_than_baseline({**result, "task": "detection"}) is None


def test_a_run_is_not_written_inside_its_dataset(cli, colours):
    """`--out DATASET/run` wrote the run's files where the dataset's readers would take them for
    its own (a hostile tester's)."""
    result = cli("train", colours, "--out", colours / "run", "-q")
    assert result.exit_code == 2 and "inside the dataset folder" in one_line(result.output)
    assert not (colours / "run").exists()


def test_a_compare_whose_model_only_guesses_the_majority_says_so():
    """A new user's balanced set 'lost' 0.214 against an originals-only model that scored exactly
    always guessing 'circle' on a validation split of mostly circles."""
    from augpipe.training.run import summary_lines

    result = {"task": "classification", "majority_baseline": 0.571, "majority_class": "circle",
              "best_epoch": 2, "best_val_acc": 0.357, "final_val_acc": 0.357, "classes": ["circle", "star"],
              "history": [{"val_acc": 0.357}], "confusion": [[8, 0], [6, 0]], "per_class_acc": {"circle": 0.4, "star": 0.3},
              "compare": {"rows": {"expanded": 272, "originals": 36}, "steps": 10, "lift": -0.214,
                          "originals": [{"val_acc": 0.571}]}}
    lines = summary_lines(result)
    assert "note: the originals model scores what always guessing 'circle' does (0.571)" in "\n".join(lines)
    result["compare"]["originals"] = [{"val_acc": 0.5}]
    assert not any(line.startswith("note: the") for line in summary_lines(result))
