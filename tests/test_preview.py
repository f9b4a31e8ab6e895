"""preview and inspect: what a recipe does, and what a dataset holds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.dataset import open_dataset
from augpipe.decode import decode
from augpipe.preview import (Layout, caption, caption_lines, donor_caption, preview_shards, preview_source,
                             render_sheet, sheet_title, write_html)
from augpipe.recipe import parse_recipe
from conftest import make_folder, write_image

FLIPS = parse_recipe("copies: 3\ntransforms: [{HorizontalFlip: {p: 0.5}}, {VerticalFlip: {p: 0.5}}]", "f.yaml")


@pytest.mark.parametrize("rows, copies", [(2, 1), (4, 3), (3, 5)])
def test_sheet_size_and_tile_count_follow_rows_and_copies(folder, rows, copies):
    preview = preview_source(folder, FLIPS, rows=rows, copies=copies, val_fraction=0)
    assert len(preview.rows) == rows and all(len(r.tiles) == copies + 1 for r in preview.rows)
    sheet = render_sheet(preview, tile=64)
    assert sheet.shape[:2] == Layout(64, caption=6 + 12 * caption_lines(preview, 64)).size(rows, copies + 1, 0)
    assert render_sheet(preview, tile=256).shape[:2] == Layout(256).size(rows, copies + 1, 0)  # 2 lines: 30 px


def test_a_caption_of_three_lines_is_whole_under_its_tile(folder):
    """A new user's: a ShiftScaleRotate copy's caption (its turn, scale and shift, then the colour
    step) ran to a third line at the default 128 px tile, and the sheet cut it off; and the
    caption named only the turn."""
    ssr = parse_recipe("copies: 3\ntransforms:\n  - ShiftScaleRotate: {shift_limit: 0.1, scale_limit: 0.2, "
                       "rotate_limit: 30, p: 1}\n  - RandomBrightnessContrast: {p: 1}\n", "ssr.yaml")
    preview = preview_source(folder, ssr, rows=2, val_fraction=0)
    copies = [t for r in preview.rows for t in r.tiles if t.copy]
    shifted = 0
    for t in copies:
        step = dict(t.applied)["ShiftScaleRotate"]
        h, w = step["shape"][:2]
        centre = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
        px, py = np.array(step["matrix"])[:2] @ centre - centre[:2]  # pixels; under one is no shift
        dx, dy = (0.0 if abs(px) < 1 else px / w), (0.0 if abs(py) < 1 else py / h)
        shift = max(abs(dx), abs(dy)) >= 0.01
        shifted += shift
        assert t.caption.startswith(f"rot{round(step['rotate'])}° x") and (" shift" in t.caption) == shift, t.caption
        if shift:
            assert f"shift{round(100 * dx):+d}%" in t.caption, (t.caption, dx, dy)
        assert t.caption.endswith(" bright/contrast"), t.caption
    assert shifted and caption_lines(preview, 128) == 3
    assert render_sheet(preview, tile=128).shape[:2] == Layout(128, caption=6 + 12 * 3).size(2, 4, 0)


def test_rows_are_drawn_across_classes(tmp_path):
    data = make_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=5)
    preview = preview_source(data, FLIPS, rows=3, val_fraction=0)
    assert sorted(r.class_name for r in preview.rows) == ["a", "b", "c"]


def test_a_class_whose_first_picks_are_held_out_still_has_its_row(tmp_path):
    """A pick that expand holds out for validation gives its turn to its class's next image, not
    to the next class (a new user's five classes once previewed as six rows without one)."""
    data = make_folder(tmp_path / "data", classes=("a", "b", "c", "d"), per_class=8)
    for seed in range(8):
        preview = preview_source(data, FLIPS, rows=4, val_fraction=0.5, seed=seed)
        assert sorted(r.class_name for r in preview.rows) == ["a", "b", "c", "d"], seed


def test_captions_name_the_transforms_that_fired(folder):
    preview = preview_source(folder, FLIPS, rows=4, copies=4, val_fraction=0)
    for row in preview.rows:
        assert row.tiles[0].caption == "original"
        for t in row.tiles[1:]:
            fired = {name for name, _ in t.applied}
            words = set(t.caption.split())
            assert ("hflip" in words) == ("HorizontalFlip" in fired)
            assert ("vflip" in words) == ("VerticalFlip" in fired)


def test_caption_short_names():
    rot = [["Rotate", {"matrix": [[0.978, 0.208, 0], [-0.208, 0.978, 0], [0, 0, 1]]}]]
    assert caption(rot) == "rot12°"
    assert caption([["HorizontalFlip", {}], ["ColorJitter", {}]]) == "hflip jitter"
    assert caption([], copy=0) == "original" and "nothing fired" in caption([], copy=2)


def test_preview_tiles_are_exactly_the_rows_expand_writes(folder, tmp_path):
    preview = preview_source(folder, "classic", rows=4, seed=11, val_fraction=0.1)
    out = tmp_path / "out"
    expand(folder, "classic", out, ExpandOptions(seed=11, val_fraction=0.1, workers=1, progress=False))
    table = pq.ParquetDataset(sorted(out.glob("train-*.parquet"))).read().to_pylist()
    rows = {(r["source"], r["copy"]): r for r in table}
    for row in preview.rows:
        for t in row.tiles:
            stored = rows[(row.source, t.copy)]
            assert np.array_equal(t.rgb, decode(stored["image"]["bytes"], 10**9).rgb)
            assert t.applied == json.loads(stored["transforms"])


def test_shard_preview_groups_copies_with_their_original(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(workers=1, progress=False))
    preview = preview_shards(out, rows=3)
    assert len(preview.rows) == 3
    for row in preview.rows:
        assert [t.copy for t in row.tiles] == [0, 1, 2]
        assert row.tiles[0].caption == "original"


def test_skipped_sources_are_named_not_fatal(folder, tmp_path):
    (folder / "cat" / "aaa_broken.jpg").write_bytes(b"garbage")
    preview = preview_source(folder, FLIPS, rows=20, val_fraction=0)
    assert ("cat/aaa_broken.jpg", "not a readable image (unknown format or corrupt header)") in preview.skipped
    assert len(render_sheet(preview, 48)) > 0


def test_sheet_stays_readable_for_tiny_and_large_images(tmp_path):
    write_image(tmp_path / "data" / "tiny" / "a.png", size=8, fmt=".png")
    write_image(tmp_path / "data" / "big" / "b.jpg", size=1000)
    preview = preview_source(tmp_path / "data", FLIPS, rows=2, copies=1, val_fraction=0)
    sheet = render_sheet(preview, tile=96)
    assert sheet.shape[:2] == Layout(96).size(2, 2, 0)


def test_html_gallery_references_only_local_files(folder, tmp_path):
    page = write_html(preview_source(folder, FLIPS, rows=2, copies=2, val_fraction=0), tmp_path / "gallery")
    text = page.read_text()
    srcs = re.findall(r"src='([^']+)'", text)
    assert len(srcs) == 6 and all((page.parent / s).is_file() for s in srcs)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "HorizontalFlip" in text or "VerticalFlip" in text or "nothing fired" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_html_gallery_renders_in_headless_chromium(folder, tmp_path):
    page = write_html(preview_source(folder, FLIPS, rows=2, copies=2, val_fraction=0), tmp_path / "gallery")
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1000,700", page.as_uri()], check=True, capture_output=True, timeout=60)
    image = decode(shot.read_bytes(), 10**9).rgb
    assert image.std() > 10  # not a blank page: the tiles are there


def test_preview_cli_writes_a_sheet_and_a_gallery(cli, folder, tmp_path):
    result = cli("preview", folder, "--recipe", "flips", "--rows", "2", "--copies", "2", "--out",
                 tmp_path / "sheet.png", "--html", tmp_path / "g")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sheet.png").is_file() and (tmp_path / "g" / "index.html").is_file()
    assert str(tmp_path / "sheet.png") in result.output
    missing = cli("preview", folder, "--out", tmp_path / "x.png")
    assert missing.exit_code == 2 and "--recipe" in missing.output


# ---------------------------------------------------------------- inspect

@pytest.fixture
def expanded(folder, tmp_path) -> Path:
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(workers=1, progress=False, val_fraction=0.3, shard_size=20_000))
    return out


def test_inspect_summarises_an_expanded_dataset(cli, expanded):
    result = cli("inspect", expanded)
    assert result.exit_code == 0, result.output
    for word in ("recipe    flips", "train", "validation", "cat", "dog", "shards", "sizes", "seed 0"):
        assert word in result.output
    facts = json.loads(cli("inspect", expanded, "--json", "-q").output)
    assert facts["classes"] == ["cat", "dog"] and facts["width"]["max"] == 32


def test_verify_passes_on_a_good_output(cli, expanded):
    result = cli("inspect", expanded, "--verify")
    assert result.exit_code == 0 and "all is well" in result.output


def _a_shard(out: Path) -> Path:
    return sorted(out.glob("train-*.parquet"))[0]


def test_verify_catches_a_changed_byte(cli, expanded):
    shard = _a_shard(expanded)
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = cli("inspect", expanded, "--verify")
    assert result.exit_code == 1 and f"{shard.name}: checksum mismatch" in result.output


def test_verify_catches_a_deleted_shard(cli, expanded):
    shard = _a_shard(expanded)
    shard.unlink()
    result = cli("inspect", expanded, "--verify")
    assert result.exit_code == 1 and f"{shard.name}: missing" in result.output


def test_verify_catches_a_truncated_shard(cli, expanded):
    shard = _a_shard(expanded)
    shard.write_bytes(shard.read_bytes()[:-100])
    result = cli("inspect", expanded, "--verify")
    assert result.exit_code == 1 and "cannot be read as Parquet" in result.output


def test_verify_catches_an_extra_shard_and_an_augmented_validation_row(cli, expanded):
    train = _a_shard(expanded)
    shutil.copy(train, expanded / "train-00099-of-00099.parquet")
    val = sorted(expanded.glob("validation-*.parquet"))[0]
    m = json.loads((expanded / "_augpipe.json").read_text())
    table = pq.read_table(train)  # train rows (with copies) written under a validation name
    pq.write_table(table, val)
    result = cli("inspect", expanded, "--json", "--verify", "-q")
    problems = json.loads(result.output)["problems"]
    assert result.exit_code == 1
    assert any("extra shard" in p for p in problems)
    assert any("augmented row" in p and "in validation" in p for p in problems)
    assert any(val.name in p and "rows, the manifest says" in p for p in problems)
    assert m  # the manifest itself was left alone


def test_inspect_source_finds_duplicates_and_bad_files(cli, folder):
    (folder / "dog" / "copy.jpg").write_bytes((folder / "cat" / "cat_000.jpg").read_bytes())
    (folder / "dog" / "broken.jpg").write_bytes(b"")
    (folder / "dog" / "notes.txt").write_text("x")
    facts = json.loads(cli("inspect", folder, "--json", "-q").output)
    dup = next(p for p in facts["problems"] if p["check"] == "exact_duplicate")
    assert {dup["path"], *dup["related"]} == {"cat/cat_000.jpg", "dog/copy.jpg"}
    assert any(p["check"] == "conflicting_labels" and {p["path"], *p["related"]} == {"cat/cat_000.jpg", "dog/copy.jpg"}
               for p in facts["problems"])
    reasons = {s["path"]: s["reason"] for s in facts["skipped"]}
    assert reasons["dog/broken.jpg"].startswith("empty file") and "unsupported file type" in reasons["dog/notes.txt"]
    assert facts["labels"]["images_per_class"] == {"cat": {"unsplit": 10}, "dog": {"unsplit": 11}}
    text = cli("inspect", folder, "-q").output
    assert "cat/cat_000.jpg" in text and "dog/copy.jpg" in text and "images under two labels: 1" in text


def test_transforms_lists_groups_from_albumentations(cli):
    result = cli("transforms")
    assert result.exit_code == 0
    for group in ("geometric:", "crops:", "colour:", "noise and blur:"):
        assert group in result.output
    assert "  HorizontalFlip(p=0.5)" in result.output and "RandomResizedCrop(size=required" in result.output
    assert "Lambda" not in result.output
    # albumentations' default for rotate_method is not what a recipe's boxes get
    geometric = cli("transforms", "geometric").output
    assert "rotate_method='largest_box'" in geometric and "the recipe's rotate_method, ellipse by default" in geometric
    assert "rotate_method" not in cli("transforms", "colour").output


QUIET = dict(progress=False, workers=1)


def test_preview_html_refuses_a_folder_it_did_not_write(tmp_path, folder, cli):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my page</html>")
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path / "s.png", "--html", site)
    assert result.exit_code == 2 and "not a gallery augpipe wrote" in result.output
    assert (site / "index.html").read_text() == "<html>my page</html>"
    gallery = tmp_path / "gallery"
    for _ in range(2):  # a gallery of ours is written again
        assert cli("preview", folder, "-r", "flips", "-o", tmp_path / "s.png", "--html", gallery).exit_code == 0


def test_preview_and_inspect_on_damaged_datasets_say_one_line(tmp_path, folder, cli):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(**QUIET))
    manifest = json.loads((out / "_augpipe.json").read_text())
    for broken in ({k: v for k, v in manifest.items() if k != "shards"}, [1, 2, 3]):
        (out / "_augpipe.json").write_text(json.dumps(broken))
        for command in (("inspect", out), ("preview", out, "-o", tmp_path / "p.png")):
            result = cli(*command)
            assert result.exit_code == 2 and result.output.startswith("augpipe: error:"), result.output
            assert "Traceback" not in result.output and "unexpected" not in result.output
    (out / "_augpipe.json").write_text(json.dumps(manifest))
    shard = out / manifest["shards"][0]["name"]
    shard.write_bytes(shard.read_bytes()[:-100])
    result = cli("preview", out, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "cannot be read" in result.output


def test_preview_draws_a_row_whose_image_does_not_decode(tmp_path, folder, cli):

    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0, **QUIET))
    shard = next(out.glob("train-*.parquet"))
    table = pq.read_table(shard)
    images = table.column("image").combine_chunks()
    broken = pa.StructArray.from_arrays([pa.array([b"junk"] * len(table)), images.field("path")],
                                        fields=list(images.type))
    pq.write_table(table.set_column(0, "image", broken), shard)
    result = cli("preview", out, "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output


def test_preview_of_a_source_with_a_crop_larger_than_every_image_says_one_line(tmp_path, folder, cli):
    recipe = tmp_path / "big-crop.yaml"
    recipe.write_text("transforms: [{RandomCrop: {height: 200, width: 200, p: 1}}]\n")
    result = cli("preview", folder, "-r", recipe, "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "too small for the recipe" in result.output, result.output


def test_preview_out_overwrites_only_a_sheet_it_wrote(tmp_path, cli):
    data = make_folder(tmp_path / "pv", per_class=3)
    source = data / "cat" / "cat_000.jpg"
    before = source.read_bytes()
    result = cli("preview", data, "-r", "flips", "--rows", "2", "--out", source)
    assert result.exit_code == 2 and f"--out {source} exists and is not a contact sheet augpipe wrote" in result.output
    assert source.read_bytes() == before
    for name in ("s.png", "s.jpg", "s.webp"):
        for _ in range(2):  # a new file, then the sheet written before
            result = cli("preview", data, "-r", "flips", "--rows", "2", "-k", "1", "--out", tmp_path / name)
            assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pv", "s.jpg", "s.png", "s.webp"]  # no temporary left


def test_preview_equals_expand_with_boxes(scenes, tmp_path):
    from augpipe.preview import preview_shards, preview_source

    out = tmp_path / "out"
    expand(scenes["coco"], "classic", out, ExpandOptions(val_fraction=0, **QUIET))
    from_source = preview_source(scenes["coco"], "classic", rows=3, seed=0, val_fraction=0)
    from_shards = preview_shards(out, rows=16)
    by_source = {r.source: r for r in from_shards.rows}
    for row in from_source.rows:
        shard_row = by_source[row.source]
        assert [t.caption for t in row.tiles] == [t.caption for t in shard_row.tiles]
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(row.tiles, shard_row.tiles))


# ---------------------------------------------------------------- multi-image steps

def _stored(out: Path) -> dict:
    return {(r["source"], r["copy"]): r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}


def _lineage_donors(applied: list) -> list[tuple[str, str, list]]:
    """(step, donor source, its own transforms) of each donor a row's lineage names, read here
    by the step names the mixing registry knows."""
    from augpipe.mixing import registry

    return [(name, d["source"], d["transforms"]) for name, params in applied if name in registry()
            for d in params["donors"]]


@pytest.mark.parametrize("split_by", ["content", "path"])
def test_preview_of_a_mix_recipe_is_exactly_what_expand_writes(tmp_path, split_by):
    from conftest import MIXES, mixed_scenes

    source, out = mixed_scenes(tmp_path, seed=5, split_by=split_by)
    recipe = parse_recipe(MIXES, "mixes.yaml")
    preview = preview_source(source, recipe, rows=5, seed=5, val_fraction=0.25, split_by=split_by)
    stored = _stored(out)
    ds = open_dataset(out)  # its kind draws a stored row as the sheet draws a tile
    training = {s for (s, _), r in stored.items() if r["split"] == "train"}
    assert {s for (s, _), r in stored.items() if r["split"] == "validation"}, "the test needs validation images"
    donors = 0
    for row in preview.rows:
        for t in row.tiles:
            held = stored[(row.source, t.copy)]
            assert held["split"] == "train"
            assert np.array_equal(t.rgb, ds.kind.draw(decode(held["image"]["bytes"], 10**9).rgb, held, ds.classes))
            assert t.applied == json.loads(held["transforms"])
            assert [(d.step, d.source, d.transforms) for d in t.donors] == _lineage_donors(t.applied)
            assert all(d.source in training and d.rgb is not None for d in t.donors)
            donors += len(t.donors)
    assert donors >= 10
    assert preview.notes and ("hashed" in preview.notes[0]) == (split_by == "content")


def test_a_mix_output_previews_its_donors_as_the_source_preview_does(tmp_path):
    from conftest import MIXES, mixed_scenes

    source, out = mixed_scenes(tmp_path)
    from_source = preview_source(source, parse_recipe(MIXES, "mixes.yaml"), rows=4, seed=3, val_fraction=0.25)
    by_source = {r.source: r for r in preview_shards(out, rows=16).rows}
    for row in from_source.rows:
        for a, b in zip(row.tiles, by_source[row.source].tiles, strict=True):
            assert a.caption == b.caption and np.array_equal(a.rgb, b.rgb)
            # a donor read from its source file, and its original row in the shards: one picture
            assert [(d.step, d.source, d.transforms) for d in a.donors] == [(d.step, d.source, d.transforms) for d in b.donors]
            assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a.donors, b.donors))


def test_a_mix_output_without_originals_lists_its_donors_without_pictures(tmp_path):
    from conftest import MIXES, make_scenes

    out = tmp_path / "out"
    expand(make_scenes(tmp_path / "data", n=10, fmt="coco"), parse_recipe(MIXES + "keep_original: false\n", "m.yaml"),
           out, ExpandOptions(val_fraction=0, **QUIET))
    preview = preview_shards(out, rows=3)
    tiles = [t for r in preview.rows for t in r.tiles]
    assert all(t.copy != 0 for t in tiles) and any(t.donors for t in tiles)
    assert all(d.rgb is None for t in tiles for d in t.donors)
    text = write_html(preview, tmp_path / "gallery").read_text()
    lists = re.findall(r"<ul class='donors'>(.*?)</ul>", text, re.S)
    assert len(lists) == sum(1 for t in tiles if t.donors) and not any("<img" in x for x in lists)


def test_donor_caption_names_each_step_and_its_donors():
    applied = [["HorizontalFlip", {}],
               ["Mosaic", {"cells": [], "donors": [{"source": "default/scene_004.png", "transforms": []},
                                                   {"source": "a/scene_011.jpg", "transforms": []},
                                                   {"source": "scene_002.png", "transforms": []}]}],
               ["CopyPaste", {"donors": [{"source": "b/x.y.png", "transforms": []}]}]]
    assert donor_caption(applied) == "Mosaic +3: scene_004, scene_011, scene_002; CopyPaste +1: x.y"
    assert caption(applied) == "hflip mosaic copy-paste"
    assert donor_caption([["Blur", {"kernel": 3}]]) == ""


def test_the_sheet_and_the_gallery_show_each_tiles_donors(tmp_path):
    from conftest import MIXES, make_scenes

    source = make_scenes(tmp_path / "data", n=12, fmt="coco")
    preview = preview_source(source, parse_recipe(MIXES, "mixes.yaml"), rows=3, seed=1, val_fraction=0)
    sheet = render_sheet(preview, tile=96)
    layout = Layout(96, caption=54)  # two caption lines more, for the donors; the note wrapped under the sheet
    assert sheet.shape[1] == layout.size(3, 4, 0)[1]
    assert sheet.shape[0] in [layout.size(3, 4, k)[0] for k in range(1, 4)]
    page = write_html(preview, tmp_path / "gallery")
    text = page.read_text()
    lists = re.findall(r"<ul class='donors'>(.*?)</ul>", text, re.S)
    tiles = [t for r in preview.rows for t in r.tiles if t.donors]
    assert tiles and len(lists) == len(tiles)
    for t, listed in zip(tiles, lists):
        items = re.findall(r"<li>(.*?)</li>", listed, re.S)
        assert len(items) == len(t.donors)
        for d, item in zip(t.donors, items):
            assert f"<b>{d.source}</b>" in item and f"{d.step} donor" in item
            (picture,) = re.findall(r"src='([^']+)'", item)
            assert np.array_equal(decode((page.parent / picture).read_bytes(), 10**9).rgb, d.rgb)


def test_preview_cli_splits_as_expand_is_told_to(cli, tmp_path):
    from conftest import MIXES, make_scenes

    source = make_scenes(tmp_path / "data", n=8, fmt="coco")
    recipe = tmp_path / "mixes.yaml"
    recipe.write_text(MIXES)
    result = cli("preview", source, "-r", recipe, "--split-by", "path", "--rows", "2", "-o", tmp_path / "s.png")
    assert result.exit_code == 0 and (tmp_path / "s.png").is_file(), result.output
    wrong = cli("preview", source, "-r", recipe, "--split-by", "name", "-o", tmp_path / "t.png")
    assert wrong.exit_code == 2 and "--split-by is content or path, not 'name'" in wrong.output, wrong.output


def test_preview_of_objects_shows_a_rare_class_from_the_source_and_from_shards(tmp_path):
    from conftest import class_scenes

    data = class_scenes(tmp_path / "coco", [[0]] * 12 + [[0, 0, 2]] + [[1, 0]] * 4)
    coin = "default/c012.png"
    shown = [r.source for r in preview_source(data, "flips", rows=3, val_fraction=0).rows]
    assert coin in shown and len(set(shown)) == 3
    expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0, progress=False, workers=1))
    assert coin in [r.source for r in preview_shards(tmp_path / "out", rows=3).rows]


def test_a_detection_sheets_title_names_each_class_once(tmp_path):
    """A new user's: the title joined each row's classes ("rows: blue, green, blue, red, green,
    blue" over 3 rows), so it read as twice the rows the sheet has."""
    from conftest import make_scenes

    source = make_scenes(tmp_path / "data", n=12, fmt="coco")
    for preview in (preview_source(source, FLIPS, rows=4, val_fraction=0),
                    preview_shards(_expanded_scenes(source, tmp_path / "out"), rows=4)):
        held = [c for r in preview.rows for c in r.held]
        assert len(held) > len(set(held)), "the rows share no class: the test shows nothing"
        assert sheet_title(preview) == f"{preview.title} | classes: {', '.join(dict.fromkeys(held))}"
        assert all(r.class_name == ", ".join(r.held) for r in preview.rows)


def _expanded_scenes(source: Path, out: Path) -> Path:
    expand(source, FLIPS, out, ExpandOptions(val_fraction=0, progress=False))
    return out


def test_transforms_finds_a_group_by_a_word_of_its_name_or_a_transform_by_its_own(cli):
    """A new user's: `augpipe transforms noise` was "no group 'noise'", the list not showing that
    "noise and blur" is one name, to be quoted."""
    whole = cli("transforms", "noise and blur").output
    assert whole.startswith("noise and blur:\n") and "  GaussNoise(" in whole
    for word in ("noise", "blur", "noise-and-blur", "NOISE_AND_BLUR"):
        assert cli("transforms", word).output == whole, word
    one = cli("transforms", "gaussnoise")
    assert one.exit_code == 0 and one.output.splitlines()[0] == "noise and blur:"
    assert [line.split("(")[0] for line in one.output.splitlines()[1:]] == ["  GaussNoise"]
    assert cli("transforms", "other").output.startswith("other:\n")
    # a group by one or many of its word (a new user's `crop` showed Crop alone, under "crops:",
    # as if it were the group); a transform as written comes first
    crops = cli("transforms", "crop").output
    assert crops == cli("transforms", "crops").output and crops.count("\n") > 5 and "  Crop(" in crops
    assert [line.split("(")[0] for line in cli("transforms", "Crop").output.splitlines()] == ["crops:", "  Crop"]
    assert [line.split("(")[0] for line in cli("transforms", "Blur").output.splitlines()] == ["noise and blur:", "  Blur"]
    wrong = cli("transforms", "xyz")
    assert wrong.exit_code == 2 and "'noise and blur'" in wrong.output and "Traceback" not in wrong.output


def test_text_on_a_sheet_spells_out_signs_and_drops_accents():
    """OpenCV's Hershey fonts drew '?' for each non-ASCII character: a skipped image's `width ≤ 0`
    read `width ? 0`, the opposite, and a class grün `gr?n` (a hostile tester's)."""
    from augpipe.targets.drawing import drawable

    assert drawable("width ≤ 0, outside the 64×48 image") == "width <= 0, outside the 64x48 image"
    assert drawable("grün/ä, Straße – x → y") == "grun/a, Strasse - x -> y"
    assert drawable("東京") == "??"


def test_a_sheet_is_not_written_inside_the_folder_it_previews(tmp_path, cli, folder):
    """A sheet written into the source became one of its images (a class a, 7 images where there
    were 6); inspect --html refused the same, preview did not (a hostile tester's)."""
    result = cli("preview", folder, "--recipe", "flips", "--out", folder / "a" / "sheet.png")
    assert result.exit_code == 2 and "is inside" in result.output and not (folder / "a" / "sheet.png").exists()


def test_a_shards_preview_shows_at_most_8_copies_a_row_unless_asked(tmp_path, folder):
    """--balance gave an image 130 rows: its preview was 18,080 px wide (a new user's)."""
    from augpipe.preview import SHARD_COPIES, preview_shards

    expand(folder, "flips", tmp_path / "out", ExpandOptions(copies=10, val_fraction=0, workers=1, progress=False))
    sheet = preview_shards(tmp_path / "out", rows=2)
    assert [len(r.tiles) for r in sheet.rows] == [1 + SHARD_COPIES] * 2 and SHARD_COPIES == 8
    assert sheet.title.endswith(f"| {SHARD_COPIES} of up to 10 copies a row (--copies for more)")
    assert [len(r.tiles) for r in preview_shards(tmp_path / "out", rows=2, copies=10).rows] == [11, 11]


def test_a_segmentation_sheet_names_each_rows_classes_and_draws_their_colours(tmp_path, scenes):
    """Each row of a segmentation sheet said "mask", and nothing said which colour was which class
    (a new user's and a hostile tester's)."""
    from augpipe.preview import preview_source, render_sheet
    from augpipe.targets.drawing import colour

    sheet = preview_source(scenes["masks"], "flips", rows=3, copies=1)
    assert all(r.class_name != "mask" and set(r.held) <= {"box", "disc"} and r.held for r in sheet.rows)
    assert sheet.legend and all(index == ["background", "box", "disc"].index(name) - 1 for name, index in sheet.legend)
    picture = render_sheet(sheet)
    band = picture[26:40]  # the legend's line, under the title
    for _, index in sheet.legend:
        assert (band == np.array(colour(index), np.uint8)).all(axis=2).any()


def test_box_names_neither_overlap_nor_leave_the_picture():
    """Two boxes at one place wrote their names over each other ("cicat"), and a box at the right
    edge had its name cut ("ca"): a hostile tester's."""
    from augpipe.targets.drawing import _label_place, draw_boxes

    placed = []
    for _ in range(3):
        left, top = _label_place((10, 20), 30, 12, (128, 128, 3), placed)
        placed.append((left, top - 12, left + 30, top))
    assert [p[1] for p in placed] == [8, 21, 34]  # a line down each time, none over another
    assert _label_place((120, 5), 30, 12, (128, 128, 3), [])[0] == 98  # inside the picture
    drawn = draw_boxes(np.zeros((64, 64, 3), np.uint8), [[58, 20, 5, 5]], [0], ["cat"], scale=1.0)
    assert (drawn[:20, 40:58] == (31, 119, 180)).all(axis=2).any()  # the name moved left of the box, whole


def test_a_name_moved_off_its_box_is_joined_to_it_by_a_line():
    """A new user's: names pushed down past others sat below the objects, joined to no box."""
    from augpipe.targets.drawing import colour, draw_boxes

    corners = [(100 + k, 40) for k in range(5)]
    boxes, names = [[x, y, 4, 4] for x, y in corners], ["person", "sign", "car", "dog", "bus"]
    drawn = draw_boxes(np.zeros((128, 128, 3), np.uint8), boxes, list(range(5)), names)
    ink = np.array(colour(4), float)  # the last name's: moved down past four others
    pixels = drawn.astype(float)
    norms = np.linalg.norm(pixels, axis=2) * np.linalg.norm(ink)
    mine = (pixels @ ink > 0.995 * norms) & (norms > 40 * np.linalg.norm(ink))  # its hue, anti-aliased or not
    rows = np.flatnonzero((drawn == colour(4)).all(axis=2).sum(axis=1) > 8)  # its name's filled rows
    assert rows.min() > 44 + 20  # well below its box (40 to 44)
    gap = range(45, rows.min())
    assert all(mine[y].any() for y in gap), [y for y in gap if not mine[y].any()]  # joined all the way


def test_a_number_stays_with_its_word_when_a_caption_wraps():
    """A new user's: "... hsv | 2" on one line and "boxes" on the next."""
    from augpipe.preview import _text_width, _wrap

    text = "hflip rot-5° x1.02/0.98 shift+1%/-2% hsv | 2 boxes, 1 dropped"
    for width in range(60, 400, 4):
        lines = _wrap(text, width, 0.35)
        assert " ".join(lines).replace("/ ", "/") == text
        assert not any(line.split()[-1].rstrip(",").isdigit() for line in lines), (width, lines)
        assert all(_text_width(line, 0.35) <= width for line in lines), (width, lines)


def test_a_word_wider_than_its_tile_breaks_after_a_slash_or_is_cut_never_spills():
    """A hostile tester's: at --tile 64, 'shift-14%/-18%' (75 px) ran into the next tile's caption."""
    from augpipe.preview import _text_width, _wrap

    text = "hflip rot-12° x1.10/1.14 shift-14%/-18% bright/contrast | 2 boxes"
    for width in (24, 32, 48, 64, 80):
        lines = _wrap(text, width, 0.35)
        assert all(_text_width(line, 0.35) <= width for line in lines), (width, lines)
    assert "shift-14%/" in _wrap(text, 64, 0.35) and any(line.startswith("-18%") for line in _wrap(text, 64, 0.35))


@pytest.mark.parametrize("step, says, never", [
    ("Affine: {rotate: [20, 40], fit_output: true, p: 1}", r"^affine rot(2\d|3\d|40)°$", "shift"),
    ("Affine: {translate_px: {x: [8, 8], y: [0, 0]}, p: 1}", r"^affine shift\+(\d+)%/\+0%$", "rot"),
    ("Affine: {shear: [10, 30], p: 1}", r"^affine shear([1-5]\d|60)°$", "shift"),  # x and y: 10 to 60 in all
    ("Affine: {rotate: [20, 40], scale: {x: [0.7, 0.8], y: [1.2, 1.3]}, p: 1}", r"^affine rot\d+° x0\.\d\d/1\.\d\d$",
     "shear"),
    # SafeRotate turns by its angle and scales the turned image to fit (the matrix's angle is not its turn)
    ("SafeRotate: {limit: [20, 40], p: 1}", r"^rot(2\d|3\d|40)° x0\.\d\d(/0\.\d\d)?( shear\d+°)?$", "affine"),
])
def test_an_affine_caption_says_what_the_step_did(folder, step, says, never):
    """The hostile tester's: a fit_output canvas grown around a turned image was captioned as a
    shift of 35%; a shear was not named."""
    import re

    preview = preview_source(folder, parse_recipe(f"copies: 2\ntransforms:\n  - {step}\n", "a.yaml"), rows=2,
                             val_fraction=0)
    for t in (t for r in preview.rows for t in r.tiles if t.copy):
        found = re.match(says, t.caption)
        assert found and never not in t.caption, t.caption
        if "translate_px" in step:  # 8 px of the image's width
            assert int(found[1]) == round(100 * 8 / dict(t.applied)["Affine"]["shape"][1]), t.caption
