"""Readers and the sanity trainer (needs the train extra: torch, matplotlib)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import cv2  # noqa: E402

import augpipe.training.run as train_module  # noqa: E402
from augpipe.errors import SourceError  # noqa: E402
from augpipe import ExpandOptions, expand  # noqa: E402
from augpipe.manifest import read_manifest  # noqa: E402
from augpipe.store import open_store  # noqa: E402
from augpipe.training.model import DEFAULT_ARCH, ArchError, build_model, layer_table, memory_bytes  # noqa: E402
from augpipe.readers import ShardDataset, ShardIterable, split_by_node  # noqa: E402
from augpipe.options import TrainOptions  # noqa: E402
from augpipe.training.run import Split, check_dataset, check_memory, train  # noqa: E402
from conftest import make_folder, write_image  # noqa: E402


def colour_folder(root: Path, per_class: int = 30, size: int = 24) -> Path:
    """Three classes told apart by colour: any working trainer learns them in an epoch or two."""
    rng = np.random.default_rng(0)
    for name, channel in (("red", 2), ("green", 1), ("blue", 0)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            image[:, :, channel] += 150
            cv2.imwrite(str(root / name / f"{i:03d}.png"), image)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readers")
    data = make_folder(root / "data", per_class=20)
    out = root / "out"
    expand(data, "flips", out, ExpandOptions(workers=1, progress=False, shard_size=25_000, val_fraction=0.2))
    return out


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    out = root / "out"
    expand(colour_folder(root / "data"), "flips", out, ExpandOptions(workers=1, progress=False, val_fraction=0.25))
    return out


def rows_of(out: Path, split: str = "train") -> list[tuple[str, int]]:
    manifest = json.loads((out / "_augpipe.json").read_text())
    return sorted((r["source"], r["copy"]) for r in ShardDataset(out, split, return_row=True)) \
        if manifest else []


# ---------------------------------------------------------------- readers

def test_random_access_equals_sequential_read(shards):
    ds = ShardDataset(shards, "train")
    assert len(ds) == json.loads((shards / "_augpipe.json").read_text())["counts"]["train"]["rows"]
    sequential = [ds[i] for i in range(len(ds))]
    image, label = sequential[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label in (0, 1)
    order = np.random.default_rng(1).permutation(len(ds))
    for i in order:
        again, lab = ShardDataset(shards, "train")[int(i)] if i % 7 == 0 else ds[int(i)]
        assert torch.equal(again, sequential[i][0]) and lab == sequential[i][1]


def test_dataset_through_a_dataloader_with_workers(shards):
    ds = ShardDataset(shards, "train", return_row=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = sorted((r["source"], r["copy"]) for r in loader)
    assert seen == sorted((r["source"], r["copy"]) for r in ds)


@pytest.mark.parametrize("world_size, workers", [(1, 0), (1, 2), (2, 2), (3, 1)])
def test_every_row_once_an_epoch_across_ranks_and_workers(shards, world_size, workers):
    expected = sorted((r["source"], r["copy"]) for r in ShardDataset(shards, "train", return_row=True))
    seen = []
    for rank in range(world_size):  # ranks simulated: each its own dataset and loader
        it = ShardIterable(shards, "train", return_row=True, shuffle=True, seed=3, rank=rank, world_size=world_size)
        it.set_epoch(1)
        loader = torch.utils.data.DataLoader(it, batch_size=None, num_workers=workers)
        seen += [(r["source"], r["copy"]) for r in loader]
    assert sorted(seen) == expected


def test_streaming_shuffle_is_seeded_per_epoch(shards):
    def order(seed, epoch):
        it = ShardIterable(shards, "train", return_row=True, shuffle=True, seed=seed, buffer_size=16)
        it.set_epoch(epoch)
        return [(r["source"], r["copy"]) for r in it]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 0)) == sorted(order(0, 1))


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """Originals only, in shards of 9, 9, 10, 4, 3, 1, 1 rows or so: a row count no rank count divides."""
    root = tmp_path_factory.mktemp("uneven")
    out = root / "out"
    expand(make_folder(root / "data", per_class=20), "flips", out,
           ExpandOptions(workers=1, progress=False, copies=0, shard_size=12_000, val_fraction=0.08))
    return out


def ids(rows) -> list[tuple[str, int]]:
    return [(r["source"], r["copy"]) for r in rows]


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_gets_as_many_rows(uneven, world_size, drop_last):
    def stream(rank=0, world=1, **kw):
        it = ShardIterable(uneven, "train", return_row=True, shuffle=True, seed=3, rank=rank, world_size=world,
                           drop_last=drop_last, **kw)
        it.set_epoch(1)
        return it

    order = ids(stream(buffer_size=1))  # the epoch's order: shards shuffled, a buffer of one keeps it
    n = len(order)
    sizes = {s["rows"] for s in read_manifest(open_store(uneven))["shards"] if s["split"] == "train"}
    assert n % world_size and len(sizes) > 1, "the fixture must not split evenly"
    per = n // world_size if drop_last else -(-n // world_size)
    seen = []
    for rank in range(world_size):
        direct = ids(stream(rank, world_size))
        loader = torch.utils.data.DataLoader(stream(rank, world_size), batch_size=None, num_workers=2)
        assert len(direct) == per == len(stream(rank, world_size))
        assert sorted(ids(loader)) == sorted(direct)  # the rank's workers read each of its rows once
        seen += direct
    if drop_last:
        assert Counter(order) - Counter(seen) == Counter(order[world_size * per:]) and len(seen) < n
    else:
        assert Counter(seen) - Counter(order) == Counter(order[:world_size * per - n]) and len(seen) > n


def test_spawned_workers_keep_the_rank(uneven, monkeypatch):
    """A worker that spawns has no process group: the rank travels in the pickled dataset."""
    import pickle

    import augpipe.readers as readers

    it = ShardIterable(uneven, "train", return_row=True)
    monkeypatch.setattr(readers, "_rank_and_world", lambda: (1, 2))  # as inside rank 1 of a DDP job
    copy = pickle.loads(pickle.dumps(it))
    monkeypatch.undo()  # as inside the spawned worker
    expected = ids(ShardIterable(uneven, "train", return_row=True, rank=1, world_size=2))
    assert ids(copy) == expected and len(expected) < len(ids(it))


def test_fewer_rows_than_ranks_is_a_loud_error(uneven):
    with pytest.raises(ValueError, match="2 rows cannot feed 3 ranks"):
        split_by_node([(0, 5, 6), (1, 0, 1)], 0, 3)
    with pytest.raises(ValueError, match="cannot feed"):
        list(ShardIterable(uneven, "validation", rank=0, world_size=100))


def test_readers_take_a_filesystem_uri(shards):
    ds = ShardDataset(shards.as_uri(), "validation")
    assert len(ds) == len(ShardDataset(shards, "validation"))
    assert torch.equal(ds[0][0], ShardDataset(shards, "validation")[0][0])


# ---------------------------------------------------------------- the model

@pytest.mark.parametrize("arch, size", [
    ("c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-d0.3-c{classes}k1-gap", 32),
    ("c8k5s1p2-r-m2-c16k4s2p1-r-c{classes}k1-gap", 32),
    ("c8k3psame-r-a2-c16k3-r-c{classes}k1-gmp", 28),
    ("c4k7s3-r-c{classes}k1-gap", 64),
    ("c8k3p1-r-l2-c16k3-r-l3s1-c{classes}k1-gap", 16),
])
def test_layer_table_equals_real_tensor_shapes(arch, size):
    model = build_model(arch, size, 5)  # also checks itself against a forward pass
    x = torch.zeros(2, 3, size, size)
    for row, module in zip(layer_table(arch, size, 5), model):
        x = module(x)
        assert tuple(x.shape[1:]) == (row.channels, row.size, row.size)


@pytest.mark.parametrize("arch, size, message", [
    ("c8k3p1-r-c16k5s2p0-r-c{classes}k1-gap", 14, "conv2: (14 − 5 + 2·0)/2 + 1 = 5.5 is not a whole number: use kernel 4, or stride 1"),
    ("c8k5s3p0-r-c{classes}k1-gap", 13, "conv1: (13 − 5 + 2·0)/3 + 1 = 3.66667 is not a whole number: use padding 2, or kernel 4, or stride 1"),
    ("c8k3-r-m2-c{classes}k1-gap", 31, "maxpool1: (29 − 2 + 2·0)/2 + 1 = 14.5 is not a whole number"),
    ("c8k9-r-c8k9-r-c{classes}k1-gap", 12, "conv2: (4 − 9 + 2·0)/1 + 1 = -4 is below 1"),
    ("c8k3p1-r-c7k1-gap", 8, "gives 7 channels for 5 classes"),
    ("c8k3p1-r-x3-gap", 8, "'x3' is not a layer"),
])
def test_bad_architectures_are_refused_with_the_arithmetic(arch, size, message):
    with pytest.raises(ArchError) as info:
        layer_table(arch, size, 5)
    assert message in str(info.value)


def test_dropout_is_off_in_evaluation():
    model = build_model("c8k3p1-r-d0.5-c{classes}k1-gap", 16, 3)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


# ---------------------------------------------------------------- training

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


def test_shape_command(cli):
    bad = cli("shape", "--arch", "c16k5s1p2-r-m2-c32k3s2p0", "--size", "32")
    assert bad.exit_code == 2 and "conv2: (16 − 3 + 2·0)/2 + 1 = 7.5 is not a whole number" in bad.output
    good = cli("shape", "--arch", "c16k5s1p2-r-m2-c32k4s2p1", "--size", "32")
    assert good.exit_code == 0 and "32×8×8" in good.output and "(16 − 4 + 2·1)/2 + 1 = 8" in good.output
    table = cli("shape", "--size", "32", "--classes", "4")
    assert table.exit_code == 0 and "4×1×1" in table.output and "total" in table.output


def test_same_padding_keeps_the_size():
    rows = layer_table("c8k5p=same-r-c8k3psame-r-c{classes}k1-gap", 20, 2)
    assert [r.size for r in rows[:4]] == [20, 20, 20, 20]
    with pytest.raises(ArchError, match="odd kernel and stride 1"):
        layer_table("c8k4psame-c{classes}k1-gap", 20, 2)


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


def test_train_help_documents_the_grammar(cli):
    text = " ".join(cli("train", "--help").output.split())
    for needle in ("cNkK", "sS", "psame", "mK / aK", "dP dropout", "gap / gmp", "{classes}", "O = (W − K + 2P)/S + 1"):
        assert needle in text, needle


# ---------------------------------------------------------------- what a hostile user tries

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


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("augpipe: error: "), output
    return lines[0]


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
    assert result.exit_code == 2 and "cannot load" in one_line(result.output)


HUGE = "c100000k3-r-c{classes}k1-gap"


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


def test_the_default_model_fits_this_machine():
    check_memory(layer_table(DEFAULT_ARCH, 32, 10), 32, 64, torch.device("cpu"), 1_000)


def test_shape_shows_the_memory(cli):
    result = cli("shape", "--batch-size", "128")
    assert result.exit_code == 0 and "memory: about 52 MB for a batch of 128" in result.output
    assert "memory: about 26 MB for a batch of 64" in cli("shape").output


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


def empty_dataset(out: Path) -> Path:
    """What expanding a folder of unreadable images gives: a manifest and shards without rows."""
    from augpipe.manifest import Manifest
    from augpipe.row import classification
    from augpipe.shards import ShardWriter

    out.mkdir()
    store = open_store(out)
    shards = []
    for split in ("train", "validation"):
        name = f"{split}-00000-of-00001.parquet"
        writer = ShardWriter(name, out, classification(["a", "b"]))
        rows, sha256, size = writer.finish()
        writer.publish(store)
        shards.append({"name": name, "split": split, "rows": rows, "bytes": size, "sha256": sha256})
    Manifest(classes=["a", "b"], labelled=True, shards=shards, recipe={"name": "x"},
             counts={s["split"]: {"rows": 0} for s in shards}).save(store)
    return out


def test_a_dataset_without_rows_is_one_line(cli, tmp_path):
    result = cli("train", empty_dataset(tmp_path / "empty"), "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the training split has no rows" in result.output.strip().splitlines()[-1]
    with pytest.raises(SourceError, match="validation split has no rows"):
        x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
        check_dataset(Split(x, torch.tensor([0]), ["a/1"], [0]), Split(x[:0], torch.tensor([]), [], []), ["a", "b"])


# ---------------------------------------------------------------- localisation, detection, segmentation

from augpipe.training.metrics import (average_precision, box_iou, confusion, mean_average_precision,  # noqa: E402
                                      segmentation_scores)
from augpipe.training.loop import resolve_device  # noqa: E402
from conftest import make_scenes, scene_image  # noqa: E402


def expanded(source: Path, out: Path, **kw) -> Path:
    expand(source, "flips", out, ExpandOptions(workers=1, progress=False, **{"val_fraction": 0.25, **kw}))
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


# ---------------------------------------------------------------- the scores, on hand-made cases

def test_box_iou():
    assert box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]])[0, 0] == 1
    assert box_iou([[0, 0, 2, 2]], [[1, 0, 2, 2]])[0, 0] == pytest.approx(2 / 6)  # half of each: 2 of 6
    assert box_iou([[0, 0, 4, 4]], [[1, 1, 2, 2]])[0, 0] == pytest.approx(4 / 16)  # one inside the other
    assert box_iou([[0, 0, 2, 2]], [[2, 0, 2, 2]])[0, 0] == 0  # touching edges
    assert box_iou([[0, 0, 2, 2]], [[5, 5, 1, 1]])[0, 0] == 0
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0  # no area: no IoU, no NaN
    many = box_iou([[0, 0, 2, 2], [1, 0, 2, 2]], [[0, 0, 2, 2], [1, 0, 2, 2], [9, 9, 1, 1]])
    assert many.shape == (2, 3) and many[1, 1] == 1 and many[0, 1] == pytest.approx(1 / 3)


def test_average_precision_by_hand():
    assert average_precision([0.9], [1], 1) == 1.0
    assert average_precision([0.9, 0.8], [0, 1], 1) == pytest.approx(0.5)  # a false positive ranked first
    assert average_precision([0.9, 0.8], [1, 0], 1) == 1.0  # ... ranked after the hit costs nothing
    assert average_precision([0.9], [1], 2) == pytest.approx(0.5)  # half the boxes found
    assert average_precision([], [], 3) == 0.0
    assert np.isnan(average_precision([0.5], [0], 0))  # no ground truth: undefined
    # 3 boxes; ranked hit, miss, hit, miss, hit: precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1
    # interpolated: 1 up to 1/3, 2/3 up to 2/3, 3/5 up to 1
    assert average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1], 3) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # the order is by score, not by position in the lists
    assert average_precision([0.5, 0.9], [1, 0], 1) == pytest.approx(0.5)


def detections(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float), "labels": np.array(labels)}


def truth(boxes, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "labels": np.array(labels)}


def test_mean_average_precision_by_hand():
    a, b = [0, 0, 10, 10], [20, 20, 10, 10]
    perfect, aps = mean_average_precision([detections([a, b], [0.9, 0.8], [0, 1])], [truth([a, b], [0, 1])], 2)
    assert perfect == 1.0 and aps == [1.0, 1.0]
    # the right box with the wrong class: a false positive for one class, a miss for the other
    swapped, _ = mean_average_precision([detections([a], [0.9], [1])], [truth([a], [0])], 2)
    assert swapped == 0.0
    # IoU 0.5 is a hit, just under is not: [0, 0, 10, 10] against [0, 0, 10, 20] is 0.5
    assert mean_average_precision([detections([[0, 0, 10, 20]], [0.9], [0])], [truth([a], [0])], 1)[0] == 1.0
    assert mean_average_precision([detections([[0, 0, 10, 20.5]], [0.9], [0])], [truth([a], [0])], 1)[0] == 0.0
    # a second detection of a found box is a false positive (VOC), ranked after the first here
    twice, _ = mean_average_precision([detections([a, a], [0.9, 0.8], [0, 0])], [truth([a], [0])], 1)
    assert twice == 1.0
    twice_first, _ = mean_average_precision([detections([a, [1, 0, 10, 10]], [0.7, 0.8], [0, 0])],
                                            [truth([a], [0])], 1)
    assert twice_first == 1.0  # the better-scored one takes the box; the other is the false positive after it
    # over images: class 0 found in one image of two, class 1 perfect, class 2 has no ground truth
    m, aps = mean_average_precision(
        [detections([a], [0.9], [0]), detections([b, [40, 40, 5, 5]], [0.8, 0.3], [1, 2])],
        [truth([a], [0]), truth([a, b], [0, 1])], 3)
    assert aps[0] == pytest.approx(0.5) and aps[1] == 1.0 and np.isnan(aps[2]) and m == pytest.approx(0.75)
    # predicting nothing: the baseline
    assert mean_average_precision([detections([], [], [])], [truth([a], [0])], 1)[0] == 0.0


def test_segmentation_scores_by_hand():
    t = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    p = np.array([[0, 1, 1, 1], [0, 0, 0, 2]])
    matrix = confusion(t, p, 3)
    assert matrix.tolist() == [[3, 1, 0], [1, 2, 0], [0, 0, 0]]  # the 255 pixel is left out
    s = segmentation_scores(matrix)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    assert s["iou"][0] == pytest.approx(3 / 5) and s["iou"][1] == pytest.approx(2 / 4) and np.isnan(s["iou"][2])
    assert s["mean_iou"] == pytest.approx((3 / 5 + 2 / 4) / 2)


# ---------------------------------------------------------------- wrong boxes score worse

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
    import pyarrow.parquet as pq

    for path in out.glob("train-*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for r in rows:
            r["objects"]["bbox"] = [[r["width"] - x - w, y, w, h] for x, y, w, h in r["objects"]["bbox"]]
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


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


# ---------------------------------------------------------------- the grammar's L2 pooling, devices

def test_l2_pooling_in_the_layer_table():
    rows = layer_table("c4k3-r-l3s2-c{classes}k1-gap", 17, 2)
    assert rows[2].layer.name == "l2pool1" and rows[2].layer.kind == "l2pool"
    assert (rows[2].channels, rows[2].size, rows[2].params) == (4, 7, 0)
    assert rows[2].arithmetic == "(15 − 3 + 2·0)/2 + 1 = 7"
    with pytest.raises(ArchError, match=r"l2pool1: \(15 − 2 \+ 2·0\)/2 \+ 1 = 7.5 is not a whole number"):
        layer_table("c4k3-r-l2-c{classes}k1-gap", 17, 2)
    model = build_model("c4k3-r-l3s2-c{classes}k1-gap", 17, 2)  # checks the table against torch
    assert isinstance(model[2], torch.nn.LPPool2d)
    pool = build_model("l2-c{classes}k1-gap", 2, 1)[0]
    x = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]]).expand(1, 3, 2, 2)
    assert pool(x)[0, 0, 0, 0].item() == pytest.approx(5.0)  # √(3² + 4²)
    assert memory_bytes(rows, 17, 8) > memory_bytes(layer_table("c4k3-r-m3s2-c{classes}k1-gap", 17, 2), 17, 8) - 8 * 8 * 4 * 49


def test_help_shows_each_task_s_default_architecture(cli):
    from augpipe.training.model import DEFAULT_ARCHS, DEFAULT_SIZES

    text = "".join(cli("train", "--help").output.replace("│", " ").split())
    for task, arch in DEFAULT_ARCHS.items():
        assert arch in text, task
    assert DEFAULT_SIZES == {"classification": 32, "localisation": 64, "detection": 64, "segmentation": 64}


def test_shape_shows_a_task_s_heads(cli):
    result = cli("shape", "--task", "detection", "--size", "64", "--classes", "3")
    assert result.exit_code == 0 and "heatmap" in result.output and "3×16×16" in result.output
    seg = cli("shape", "--task", "segmentation", "--size", "64", "--classes", "4", "--arch", "c8k3p1-r-l2-c8k3p1-r")
    assert seg.exit_code == 0 and "l2pool1" in seg.output and "bilinear 32×32 → 64×64" in seg.output
    bad = cli("shape", "--task", "localisation", "--arch", DEFAULT_ARCH)
    assert bad.exit_code == 2 and "gap: localisation needs the feature map" in bad.output


@pytest.mark.parametrize("device, needle", [("mps", "--device mps: no Apple GPU here"),
                                            ("cuda", "--device cuda: no CUDA device here")])
def test_an_absent_device_is_one_line(cli, colours, tmp_path, device, needle):
    if (torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()):
        pytest.skip(f"this machine has {device}")
    result = cli("train", colours, "--device", device, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and needle in one_line(result.output)


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps" and resolve_device("mps").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


# ---------------------------------------------------------------- images without objects, one class, mixed sizes

from conftest import scene_objects  # noqa: E402


def sparse_coco(root: Path, n: int = 16, classes=("box",), empty_every: int = 3,
                sizes=((80, 64), (48, 72))) -> Path:
    """COCO scenes with polygons: every `empty_every`th image without an object, the images in
    turn of each size, every object of the classes given (its class index taken modulo their count)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    (root / "default").mkdir(parents=True)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        objects = [] if i % empty_every == 0 else [(c % len(classes), b, p) for c, b, p in scene_objects(rng, w, h)]
        name = f"s{i:03d}.png"
        cv2.imwrite(str(root / "default" / name), cv2.cvtColor(scene_image(objects, w, h, rng), cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0, "segmentation": [p]} for c, b, p in objects]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}))
    return root


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> Path:
    """One class, a third of the images without an object (in both splits), two image sizes."""
    root = tmp_path_factory.mktemp("sparse")
    out = expanded(sparse_coco(root / "data"), root / "out", val_fraction=0.3)
    for split in ("train", "validation"):
        rows = ShardDataset(out, split, return_row=True)
        assert any(len(r["objects"]["bbox"]) == 0 for r in rows), f"the fixture needs an empty {split} image"
        assert len({(r["width"], r["height"]) for r in rows}) == 2, f"the fixture needs mixed sizes in {split}"
    return out


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


def test_instance_masks_of_mixed_sizes_and_empty_images_paint_where_they_are(sparse):
    from augpipe.dataset import open_dataset
    from augpipe.training.segmentation import read_masks

    size = 16
    x, masks, (sources, copies, _) = read_masks(open_dataset(sparse), "validation", size, False, 2)
    rows = list(ShardDataset(sparse, "validation", box_format="xyxy"))
    assert len(rows) == len(masks)
    for (_, target), mask in zip(rows, masks):
        expected = np.zeros((size, size), np.uint8)
        if len(target["masks"]):
            union = target["masks"].numpy().max(0)
            expected = cv2.resize(union, (size, size), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(mask, expected)


def test_classification_takes_images_of_mixed_sizes(cli, tmp_path):
    data = make_folder(tmp_path / "data", per_class=8, size=40)
    for i, path in enumerate(sorted((data / "dog").iterdir())[:4]):
        write_image(path, size=24 + 8 * i, seed=i)
    out = expanded(data, tmp_path / "out")
    assert len({tuple(img.shape) for img, _ in ShardDataset(out, "train")}) > 1
    result = cli("train", out, "--out", tmp_path / "run", "--epochs", "1", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["task"] == "classification"


# ---------------------------------------------------------------- the output folder

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


# ---------------------------------------------------------------- signals: each command's own sentence

@pytest.mark.parametrize("how, code, word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_during_train_says_train_s_own_sentence(colours, tmp_path, how, code, word):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
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


@pytest.mark.parametrize("command", ["train", "demo", "preview", "inspect", "export", "check", "shape"])
def test_no_command_but_expand_speaks_of_shards_when_stopped(monkeypatch, command):
    import errno

    from augpipe.cli import _error_table, _state
    from augpipe.signals import Terminated

    monkeypatch.setitem(_state, "command", command)
    for exc in (KeyboardInterrupt(), Terminated(), OSError(errno.ENOSPC, "No space left on device")):
        message = _error_table(exc)[1]
        assert "shards" not in message and "resume" not in message and "run the same command again" in message
    monkeypatch.setitem(_state, "command", "expand")
    assert "finished shards are kept" in _error_table(Terminated())[1]


# ---------------------------------------------------------------- refused in one line, not a traceback

@pytest.mark.parametrize("pool", ["m0", "a0", "l0", "m2s0"])
def test_a_pooling_window_or_stride_of_zero_is_one_line(cli, colours, tmp_path, pool):
    arch = f"c16k3p1-r-{pool}-c{{classes}}k1-gap"
    for args in (("shape", "--arch", arch), ("train", colours, "--arch", arch, "--out", tmp_path / "run", "-q")):
        result = cli(*args)
        assert result.exit_code == 2
        assert f"'{pool}': a pooling window and its stride must be at least 1" in one_line(result.output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", [2**64, -2**63 - 1])
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


def without_objects(out: Path, split: str) -> None:
    """Every row of the split's shards left without its objects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in out.glob(f"{split}-*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for r in rows:
            r["objects"] = {k: [] for k in r["objects"]}
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


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
