"""expand end to end: layout, shards, manifest, determinism, resume, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from conftest import as_if_killed, make_folder, shard_hashes, write_image

QUIET = dict(progress=False, workers=1)


def rows(out: Path, split: str = "*"):
    tables = [pq.read_table(p) for p in sorted(out.glob(f"{split}-*.parquet"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


def test_expand_writes_hf_named_shards_with_the_exact_schema(folder, tmp_path):
    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names and all(n.split("-")[0] in ("train", "validation") for n in names)
    assert any(n.startswith("train-00000-of-") for n in names)
    schema = pq.read_schema(next(out.glob("train-*.parquet")))
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("image").nullable and schema.field("label").nullable
    assert schema.field("label").type == pa.int64()
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"] == {"names": ["cat", "dog"], "_type": "ClassLabel"}
    assert set(schema.names) == {"image", "label", "source", "source_sha256", "copy", "seed", "transforms",
                                 "width", "height", "split"}
    assert m["counts"]["train"]["rows"] == 3 * m["counts"]["train"]["originals"]  # flips: 2 copies + original


def test_validation_holds_originals_only_and_copies_stay_with_their_source(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0.3, **QUIET))
    val, train = rows(out, "validation"), rows(out, "train")
    assert val and all(r["copy"] == 0 and r["transforms"] == "[]" for r in val)
    assert not {r["source"] for r in val} & {r["source"] for r in train}
    assert {r["copy"] for r in train} == {0, 1, 2}


def test_manifest_checksums_counts_and_recipe_match_the_files(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "classic", out, ExpandOptions(seed=5, **QUIET))
    m = json.loads((out / "_augpipe.json").read_text())
    assert m["seed"] == 5 and m["recipe"]["name"] == "classic" and "HorizontalFlip" in m["recipe"]["text"]
    assert {s["name"] for s in m["shards"]} == {p.name for p in out.glob("*.parquet")}
    for shard in m["shards"]:
        data = (out / shard["name"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (shard["sha256"], shard["bytes"])
        assert pq.ParquetFile(out / shard["name"]).metadata.num_rows == shard["rows"]
    assert sum(c["rows"] for c in m["counts"].values()) == len(rows(out))
    assert m["classes"] == ["cat", "dog"] and "seconds" in m["timing"]
    assert not (out / ".augpipe").exists()


def test_same_inputs_give_byte_identical_shards_whatever_the_worker_count(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    one, four = tmp_path / "one", tmp_path / "four"
    # a small shard size makes several shards, so that four workers really share them
    expand(data, "classic", one, ExpandOptions(workers=1, shard_size=30_000, progress=False))
    expand(data, "classic", four, ExpandOptions(workers=4, shard_size=30_000, progress=False))
    assert len(shard_hashes(one)) > 4
    assert shard_hashes(one) == shard_hashes(four)


def test_another_seed_gives_other_augmentations(folder, tmp_path):
    expand(folder, "classic", tmp_path / "a", ExpandOptions(seed=1, **QUIET))
    expand(folder, "classic", tmp_path / "b", ExpandOptions(seed=2, **QUIET))
    assert shard_hashes(tmp_path / "a") != shard_hashes(tmp_path / "b")


def test_adding_files_never_moves_an_existing_file_to_another_split(tmp_path):
    data = make_folder(tmp_path / "data", per_class=30)
    expand(data, "flips", tmp_path / "before", ExpandOptions(val_fraction=0.2, **QUIET))
    make_folder(tmp_path / "more", per_class=30)
    for src in (tmp_path / "more").rglob("*.jpg"):
        dest = data / src.parent.name / f"new_{src.name}"
        dest.write_bytes(src.read_bytes())
    expand(data, "flips", tmp_path / "after", ExpandOptions(val_fraction=0.2, **QUIET))
    before = {r["source"] for r in rows(tmp_path / "before", "validation")}
    after = {r["source"] for r in rows(tmp_path / "after", "validation")}
    old_sources = {r["source"] for r in rows(tmp_path / "before")}
    assert before and after & old_sources == before


def test_split_folders_are_used_as_they_are(tmp_path):
    for split in ("train", "val", "test"):
        make_folder(tmp_path / "data" / split, per_class=3)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(**QUIET))
    assert set(m["counts"]) == {"train", "validation", "test"}
    assert m["counts"]["validation"]["rows"] == 6 and m["counts"]["test"]["rows"] == 6
    assert all(r["copy"] == 0 for r in rows(tmp_path / "out", "test"))
    assert all(r["source"].startswith("val/") for r in rows(tmp_path / "out", "validation"))


def test_folder_without_class_folders_is_unlabelled(tmp_path):
    for i in range(4):
        write_image(tmp_path / "data" / f"{i}.jpg", seed=i)
    m = expand(tmp_path / "data", "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    assert not m["labelled"] and m["classes"] == []
    assert {r["label"] for r in rows(tmp_path / "out")} == {None}


def test_deeper_folders_belong_to_their_first_level_class_and_hidden_files_are_ignored(tmp_path):
    data = tmp_path / "data"
    write_image(data / "cat" / "indoor" / "deep" / "a.jpg")
    write_image(data / "dog" / "b.JPEG")
    write_image(data / "dog" / ".hidden.jpg")
    write_image(data / ".cache" / "x" / "c.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    got = {(r["source"], r["label"]) for r in rows(tmp_path / "out") if r["copy"] == 0}
    assert got == {("cat/indoor/deep/a.jpg", 0), ("dog/b.JPEG", 1)}
    assert m["skipped"] == []


def test_unicode_names_spaces_and_symlinks_including_loops(tmp_path):
    data = tmp_path / "data"
    write_image(data / "chat noir" / "été 1.jpg")
    write_image(data / "狗" / "图片.png", fmt=".png")
    (data / "狗" / "loop").symlink_to(data, target_is_directory=True)
    (data / "chat noir" / "link.jpg").symlink_to(data / "chat noir" / "été 1.jpg")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    assert m["classes"] == ["chat noir", "狗"]
    # a link to a file or folder that is also read in its own place is read once, there
    assert m["counts"]["train"]["originals"] == 2
    assert sorted((s["path"], s["reason"]) for s in m["skipped"]) == [
        ("chat noir/link.jpg", "a link to a file read in its own place (chat noir/été 1.jpg)"),
        ("狗/loop", "a link to a folder read in its own place (./)")]


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image: decoding it would need width*height*3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def add_bad_inputs(data: Path) -> dict[str, str]:
    good = write_image(data / "cat" / "good.jpg", size=96).read_bytes()
    (data / "cat" / "empty.jpg").write_bytes(b"")
    (data / "cat" / "truncated.jpg").write_bytes(good[: len(good) * 2 // 3])
    (data / "cat" / "text.jpg").write_text("this is not an image")
    (data / "cat" / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    (data / "dog" / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (data / "dog" / "dangling.jpg").symlink_to(data / "nowhere.jpg")
    return {
        "cat/empty.jpg": "empty file",
        "cat/truncated.jpg": "corrupt or truncated",
        "cat/text.jpg": "not a readable image",
        "cat/anim.gif": "unsupported file type '.gif'",
        "dog/bomb.png": "too large: 100000×100000",
        "dog/dangling.jpg": "broken symlink",
    }


def test_each_kind_of_bad_input_is_skipped_and_recorded(folder, tmp_path):
    expected = add_bad_inputs(folder)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, **QUIET))
    recorded = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(recorded) == set(expected)
    for path, reason in expected.items():
        assert reason in recorded[path], (path, recorded[path])
    assert m["counts"]["train"]["originals"] == 21  # 20 good + good.jpg
    assert json.loads((tmp_path / "out" / "_augpipe.json").read_text())["skipped"] == m["skipped"]


def test_max_pixels_skips_large_images(folder, tmp_path):
    write_image(folder / "cat" / "big.jpg", size=64)
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(max_pixels=40 * 40, val_fraction=0, **QUIET))
    assert [s["path"] for s in m["skipped"]] == ["cat/big.jpg"]


def test_balance_gives_minority_classes_more_copies(tmp_path):
    data = tmp_path / "data"
    make_folder(data, classes=("many",), per_class=20)
    make_folder(data, classes=("few",), per_class=5)
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(balance=True, val_fraction=0, **QUIET))
    by_class = m["counts"]["train"]["by_class"]
    assert by_class["many"] == 60 and by_class["few"] == 60
    plain = expand(data, "flips", tmp_path / "plain", ExpandOptions(val_fraction=0, **QUIET))
    assert plain["counts"]["train"]["by_class"]["few"] == 15


def test_copies_overrides_the_recipe(folder, tmp_path):
    m = expand(folder, "flips", tmp_path / "out", ExpandOptions(copies=5, val_fraction=0, **QUIET))
    assert m["counts"]["train"]["rows"] == 20 * 6


def test_rerun_is_up_to_date_and_another_recipe_is_refused_without_overwrite(folder, tmp_path):
    from augpipe.errors import OutputError

    out = tmp_path / "out"
    first = expand(folder, "flips", out, ExpandOptions(**QUIET))
    again = expand(folder, "flips", out, ExpandOptions(**QUIET))
    assert again.get("up_to_date") and again["shards"] == first["shards"]
    with pytest.raises(OutputError, match="another recipe"):
        expand(folder, "rotations", out, ExpandOptions(**QUIET))
    with pytest.raises(OutputError, match="another seed"):
        expand(folder, "flips", out, ExpandOptions(seed=9, **QUIET))
    m = expand(folder, "rotations", out, ExpandOptions(overwrite=True, **QUIET))
    assert m["recipe"]["name"] == "rotations"
    assert {p.name for p in out.glob("*.parquet")} == {s["name"] for s in m["shards"]}


def test_a_folder_that_is_not_augpipe_output_is_never_written_into(folder, tmp_path):
    from augpipe.errors import OutputError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not empty"):
        expand(folder, "flips", out, ExpandOptions(overwrite=True, **QUIET))
    assert (out / "thesis.tex").read_text() == "precious"


def test_strict_stops_at_the_first_bad_input(folder, tmp_path):
    from augpipe.errors import StrictSkipError

    (folder / "cat" / "zzz.jpg").write_bytes(b"")
    with pytest.raises(StrictSkipError, match="cat/zzz.jpg: empty file"):
        expand(folder, "flips", tmp_path / "out", ExpandOptions(strict=True, **QUIET))


def _expand_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "augpipe", "expand", str(data), "-r", "classic", "-o", str(out),
            "--shard-size", "250KB", "-w", "2", "-q", "--seed", "3"]


def test_resume_after_sigkill_gives_the_same_output_as_an_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data", per_class=300, size=128)
    reference = tmp_path / "reference"
    subprocess.run(_expand_cmd(data, reference), check=True, capture_output=True)
    expected = shard_hashes(reference)
    assert len(expected) > 8
    out = tmp_path / "out"
    rng = random.Random()
    for attempt in range(2):
        before = len(list(out.glob("*.parquet")))
        proc = subprocess.Popen(_expand_cmd(data, out), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.parquet"))) <= before and time.monotonic() < deadline:
            time.sleep(0.01)  # wait for this attempt's first new shard: the kill lands mid-run
        time.sleep(rng.uniform(0, 0.1))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if attempt == 0:
            assert not (out / "_augpipe.json").exists(), "the run finished before it was killed"
        for shard in out.glob("*.parquet"):  # whatever is under a final name is complete
            pq.read_metadata(shard)
    done = subprocess.run(_expand_cmd(data, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert shard_hashes(out) == expected
    assert json.loads((out / "_augpipe.json").read_text())["shards"] == \
        json.loads((reference / "_augpipe.json").read_text())["shards"]


def test_readers_need_no_augpipe_code(folder, tmp_path):
    import duckdb
    import pandas as pd

    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(**QUIET))
    train_rows = m["counts"]["train"]["rows"]
    df = pd.concat(pd.read_parquet(p) for p in sorted(out.glob("train-*.parquet")))
    assert len(df) == train_rows and set(df["label"]) == {0, 1}
    query = f"select count(*) from read_parquet('{out}/train-*.parquet') where copy > 0"
    got = duckdb.connect().execute(query).fetchall()[0][0]
    assert got == m["counts"]["train"]["augmented"]


def test_hugging_face_datasets_round_trip(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    m = expand(folder, "flips", out, ExpandOptions(val_fraction=0.3, **QUIET))
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows == m["counts"]["train"]["rows"]
    assert ds["train"].features["label"].names == ["cat", "dog"]
    assert isinstance(ds["train"].features["image"], datasets.Image)
    first = ds["validation"][0]
    assert first["image"].size == (32, 32) and first["image"].mode == "RGB"
    same = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache2"))
    assert same["validation"].num_rows == ds["validation"].num_rows


def test_the_last_shards_are_smaller_so_that_workers_finish_together(tmp_path):
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe
    from augpipe.formats import scan

    data = make_folder(tmp_path / "data", classes=("a",), per_class=400)
    found = scan(str(data))
    shard_bytes = -(-sum(f.size for f in found.files) // 8)  # 8 full shares of the split
    plan = make_plan(found, load_recipe("flips"), 0, 0.0, False, shard_bytes)
    sizes = [len(s.sources) for s in plan.shards]
    assert len(sizes) == 11 and sum(sizes) == 400
    full = sizes[0]
    assert all(abs(n - full) <= 2 for n in sizes[:7])
    assert all(abs(n - full * share) <= 2 for n, share in zip(sizes[7:], (1 / 2, 1 / 4, 1 / 8, 1 / 8)))


def test_a_finished_shard_whose_size_disagrees_with_its_record_is_redone(tmp_path):
    data = make_folder(tmp_path / "data", per_class=40)
    out = tmp_path / "out"
    options = ExpandOptions(workers=1, shard_size=30_000, progress=False)
    expand(data, "flips", out, options)
    expected = shard_hashes(out)
    # what a crash leaves: finished shards with records, one of them torn, and no manifest
    manifest = as_if_killed(out)
    torn = out / manifest["shards"][0]["name"]
    torn.write_bytes(torn.read_bytes()[:100])
    done = expand(data, "flips", out, options)
    assert shard_hashes(out) == expected
    assert done["timing"]["shards_resumed"] == len(expected) - 1


def test_strict_with_workers_fails_in_one_line_and_leaves_no_process(tmp_path):
    data = make_folder(tmp_path / "data", per_class=60)
    (data / "dog" / "dog_999.jpg").write_bytes(b"not an image")
    cmd = [sys.executable, "-m", "augpipe", "expand", str(data), "-r", "flips", "-o", str(tmp_path / "out"),
           "-w", "2", "--shard-size", "20KB", "--strict", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "augpipe: error: dog/dog_999.jpg: not a readable image (unknown format or corrupt header) "
        "(--strict stops at the first bad input)"]


def test_originals_are_the_source_files_bytes_whatever_the_recipes_format(tmp_path):
    from conftest import make_scenes

    # classification: JPEG, PNG, WebP and BMP sources under the detection recipe (PNG output)
    folder = tmp_path / "folder"
    for i, fmt in enumerate((".jpg", ".png", ".webp", ".bmp") * 3):
        write_image(folder / ("cat", "dog")[i % 2] / f"x{i}{fmt}", seed=i, fmt=fmt)
    grey = folder / "cat/grey.png"
    grey.write_bytes(cv2.imencode(".png", np.full((20, 24), 90, np.uint8))[1].tobytes())
    # detection: COCO scenes (PNG) with one of them a JPEG
    scenes = make_scenes(tmp_path / "coco", n=6)
    names = json.loads((scenes / "annotations/instances_default.json").read_text())
    png = scenes / "default/scene_000.png"
    cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
    png.unlink()
    names["images"][0]["file_name"] = "scene_000.jpg"
    (scenes / "annotations/instances_default.json").write_text(json.dumps(names))
    for source in (folder, scenes):
        for copies in (0, 1):
            out = tmp_path / f"{source.name}-{copies}"
            expand(source, "detection", out, ExpandOptions(copies=copies, val_fraction=0.4, **QUIET))
            table = rows(out)
            assert {r["split"] for r in table} == {"train", "validation"}
            for r in table:
                data = r["image"]["bytes"]
                if r["copy"] > 0 or r["source"] == "cat/grey.png":  # augmented, or converted to RGB
                    assert data.startswith(b"\x89PNG") and r["image"]["path"].endswith(".png")
                    assert r["source"] != "cat/grey.png" or data != grey.read_bytes()
                else:
                    assert data == (source / r["source"]).read_bytes() and r["image"]["path"] == r["source"]
