"""The studio's session without the web: tiles are expand's rows, renders go stale, saves stay put."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import RecipeError, UsageError
from augpipe.studio import Pick, Stale, Studio
from conftest import make_folder, make_scenes, rows

FLIPS = """name: mine
copies: 3
transforms:
  - HorizontalFlip: {p: 0.5}
  - Rotate: {limit: [-20, 20], p: 0.8}
  - RandomBrightnessContrast: {p: 0.5}
"""
BOXES = """name: boxes
copies: 3
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Affine: {scale: [0.7, 1.2], translate_percent: [-0.2, 0.2], border_mode: 0, p: 0.9}
"""
MOSAIC = """name: mosaic
copies: 3
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Mosaic: {p: 1.0, target_size: [96, 96]}
"""


def _tiles_and_rows(source: Path, text: str, tmp_path: Path, seed: int = 7):
    """The studio's tiles of a few sources, and the rows expand wrote for them with the same seed."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    studio = Studio(str(source), str(recipe), workdir=tmp_path)
    try:
        job = studio.prepare(text, seed=seed, copies=3, rows=3, pick=Pick("random", 1))
        tiles = [e for e in job.run() if e["type"] == "tile"]
        raw = {(e["source"], e["copy"]): studio.tiles.get(e["raw"].split("/")[-2] + "-raw")[0] for e in tiles}
    finally:
        studio.close()
    out = tmp_path / "out"
    expand(source, recipe, out, ExpandOptions(workers=1, progress=False, seed=seed))
    written = {(r["source"], r["copy"]): r for r in rows(out, "train")}
    return tiles, raw, written


@pytest.mark.parametrize("kind", ["classification", "yolo", "mosaic"])
def test_a_tile_is_the_row_expand_writes_for_that_source_copy_and_seed(tmp_path, kind):
    if kind == "classification":
        source, text = make_folder(tmp_path / "src", per_class=8, size=48), FLIPS
    else:
        source, text = make_scenes(tmp_path / "src", n=12, fmt="yolo"), BOXES if kind == "yolo" else MOSAIC
    tiles, raw, written = _tiles_and_rows(source, text, tmp_path)
    assert len(tiles) == 12 and not [t for t in tiles if "failed" in t]
    assert {c for _, c in raw} == {0, 1, 2, 3}
    for key, data in raw.items():
        assert data == written[key]["image"]["bytes"], key
    changed = [t for t in tiles if t["copy"] and t["applied"]]
    assert changed, "no transform fired on any copy"
    if kind == "mosaic":
        donors = [d for t in tiles for d in t["donors"]]
        assert donors and all(d["source"] in {s for s, _ in written} | {r["source"] for r in rows(tmp_path / "out")}
                              for d in donors)
        recorded = [d["source"] for t in tiles for d in t["donors"] if t["copy"] == 1][:3]
        import json

        first = next(t for t in tiles if t["copy"] == 1 and t["donors"])
        row = written[(first["source"], 1)]
        lineage = json.loads(row["transforms"])
        assert [d["source"] for d in lineage[-1][1]["donors"]] == [d["source"] for d in first["donors"]], recorded


def test_a_newer_render_makes_the_older_stale_and_tiles_are_kept_between_edits(tmp_path):
    source = make_folder(tmp_path / "src", per_class=6, size=40)
    studio = Studio(str(source), workdir=tmp_path)
    try:
        old = studio.prepare(FLIPS, seed=1)
        new = studio.prepare(FLIPS, seed=2)
        with pytest.raises(Stale):
            old.tile(0, 1)
        first = new.tile(0, 1)
        again = studio.prepare(FLIPS, seed=2).tile(0, 1)
        assert again["src"] == first["src"]  # made once: the same key
        other = studio.prepare(FLIPS, seed=3).tile(0, 1)
        assert other["src"] != first["src"]
    finally:
        studio.close()


SLOW = "copies: 3\ntransforms:\n  - GlassBlur: {sigma: 0.7, max_delta: 4, iterations: 10, p: 1}\n"


def test_a_newer_render_gets_threads_of_its_own_while_stale_tiles_finish(tmp_path):
    """An order, not a speed: every tile of the newer render is made while the stale render's
    tile (seconds of GlassBlur at 1600 px) is still on its thread."""
    source = make_folder(tmp_path / "src", per_class=4, size=1600)
    studio = Studio(str(source), workdir=tmp_path, workers=2)
    try:
        slow = studio.prepare(SLOW, seed=1, copies=3, rows=2)
        stale = [slow.pool.executor.submit(slow.pool.run, slow.tile, row, copy) for row, copy in slow.tasks]
        deadline = time.monotonic() + 120  # a bound on a hang
        while slow.pool.busy < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        new = studio.prepare(FLIPS, seed=1, copies=1, rows=2)
        assert new.pool is not slow.pool
        made = [f.result() for f in [new.pool.executor.submit(new.pool.run, new.tile, row, copy)
                                     for row, copy in new.tasks]]
        assert len(made) == 4 and not [m for m in made if "failed" in m]
        assert slow.pool.busy > 0 and not all(f.done() for f in stale)
    finally:
        studio.close()


def test_an_invalid_recipe_says_checks_words_and_a_pick_of_files_names_the_held_out(tmp_path):
    source = make_folder(tmp_path / "src", per_class=10, size=40)
    studio = Studio(str(source), workdir=tmp_path, val_fraction=0.5)
    try:
        with pytest.raises(RecipeError, match="transform 1 Rotat: unknown transform"):
            studio.prepare("transforms:\n  - Rotat: {limit: 3}\n")
        every = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.jpg"))
        job = studio.prepare(FLIPS, pick=Pick("files", files=tuple(every[:6])), rows=6)
        assert job.skipped and all(reason.startswith("held out for validation") for _, reason in job.skipped)
        assert len(job.chosen) + len(job.skipped) == 6
        with pytest.raises(UsageError, match="not a training image"):
            studio.prepare(FLIPS, pick=Pick("files", files=("../outside.jpg",)))
    finally:
        studio.close()


def test_save_writes_the_recipe_atomically_with_a_backup_and_nothing_else(tmp_path, monkeypatch):
    source = make_folder(tmp_path / "src", per_class=4, size=32)
    work = tmp_path / "work"
    work.mkdir()
    recipe = work / "r.yaml"
    recipe.write_text(FLIPS)
    studio = Studio(str(source), str(recipe), workdir=work)
    try:
        edited = FLIPS.replace("copies: 3", "copies: 5")
        done = studio.save(edited)
        assert done["saved"] == "r.yaml" and done["backup"] == "r.yaml.bak"
        assert recipe.read_text() == edited and (work / "r.yaml.bak").read_text() == FLIPS
        assert "--recipe r.yaml" in done["command"]
        with pytest.raises(RecipeError):
            studio.save("transforms: [Nope]\n")
        assert recipe.read_text() == edited  # an invalid recipe is not written
        for bad, why in [("../escape.yaml", "inside the working folder"), ("/etc/r.yaml", "inside the working folder"),
                         ("notes.txt", ".yaml"), ("r.yaml.bak", ".yaml"), ("sub/x.yaml", "no folder")]:
            with pytest.raises(UsageError, match=why):
                studio.save(edited, bad)
        (work / "theirs.yaml").write_text("mine, not augpipe's\n")
        with pytest.raises(UsageError, match="exists"):
            studio.save(edited, "theirs.yaml")
        assert (work / "theirs.yaml").read_text() == "mine, not augpipe's\n"
        assert studio.save(edited, "new.yaml")["saved"] == "new.yaml"
        assert sorted(p.name for p in work.iterdir()) == ["new.yaml", "r.yaml", "r.yaml.bak", "theirs.yaml"]
    finally:
        studio.close()


def test_a_bundled_recipe_is_a_template_saved_under_a_new_name(tmp_path):
    source = make_folder(tmp_path / "src", per_class=4, size=32)
    studio = Studio(str(source), "classic", workdir=tmp_path)
    try:
        assert studio.state()["recipe"]["bundled"]
        with pytest.raises(UsageError, match="bundled recipe"):
            studio.save(studio.text)
        assert "--recipe classic" in studio.command()
        studio.save(studio.text, "classic-mine.yaml")
        assert "--recipe classic-mine.yaml" in studio.command()
    finally:
        studio.close()


def test_save_replaces_a_planted_link_never_follows_it_and_can_go_back_to_the_started_file(tmp_path):
    source = make_folder(tmp_path / "src", per_class=4, size=32)
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "r.yaml").write_text(FLIPS)
    (work / "r.yaml.bak").symlink_to(outside / "pwned.bak")
    studio = Studio(str(source), str(work / "r.yaml"), workdir=work)
    try:
        studio.save(FLIPS.replace("copies: 3", "copies: 4"))
        assert not (outside / "pwned.bak").exists() and not (work / "r.yaml.bak").is_symlink()
        assert (work / "r.yaml.bak").read_text() == FLIPS
        assert studio.save(FLIPS, "other")["saved"] == "other.yaml"  # .yaml added
        assert studio.save(FLIPS, "r.yaml")["saved"] == "r.yaml"  # back to the file it started with
        with pytest.raises(RecipeError, match="works on detection and segmentation datasets"):
            studio.save(MOSAIC, "mosaic.yaml")  # valid YAML, but not for this dataset
        assert not (work / "mosaic.yaml").exists()
        with pytest.raises(UsageError, match="NUL"):
            studio.save(FLIPS, "a\0b.yaml")
        assert sorted(p.name for p in work.iterdir()) == ["other.yaml", "r.yaml", "r.yaml.bak"]
    finally:
        studio.close()


def test_a_new_recipe_file_in_a_recipes_folder_and_unreadable_images_said_as_expand_says_them(tmp_path, monkeypatch):
    source = make_folder(tmp_path / "src", per_class=6, size=32)
    (source / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)
    (source / "cat" / "empty.jpg").write_bytes(b"")
    (tmp_path / "recipes").mkdir()
    monkeypatch.chdir(tmp_path)
    studio = Studio(str(source), "recipes/new.yaml", workdir=tmp_path)
    try:
        assert studio.state()["recipe"]["path"] == "recipes/new.yaml" and not studio.bundled
        job = studio.prepare(FLIPS, pick=Pick("files", files=("cat/corrupt.jpg", "cat/empty.jpg")), rows=2)
        reasons = dict(job.skipped)
        assert "corrupt" in reasons["cat/corrupt.jpg"] or "not a readable image" in reasons["cat/corrupt.jpg"]
        assert "empty" in reasons["cat/empty.jpg"]
        studio.save(FLIPS)
        assert (tmp_path / "recipes" / "new.yaml").read_text() == FLIPS
    finally:
        studio.close()


def test_mosaic_tiles_made_on_many_threads_at_once_are_expands_rows(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    source = make_scenes(tmp_path / "src", n=16, fmt="yolo")
    recipe = tmp_path / "m.yaml"
    text = MOSAIC.replace("copies: 3", "copies: 6").replace("target_size: [96, 96]", "target_size: [96, 96], cell_shape: [60, 50]")
    recipe.write_text(text)
    studio = Studio(str(source), str(recipe), workdir=tmp_path, workers=4)
    try:
        job = studio.prepare(text, seed=11, copies=6, rows=8)
        with ThreadPoolExecutor(4) as pool:
            tiles = list(pool.map(lambda task: job.tile(*task), job.tasks))
        raw = {(t["source"], t["copy"]): studio.tiles.get(t["raw"].split("/")[-2] + "-raw")[0]
               for t in tiles if "failed" not in t}
    finally:
        studio.close()
    assert len(raw) == len(tiles) == len(job.tasks), [t["failed"] for t in tiles if "failed" in t][:3]
    expand(source, recipe, tmp_path / "out", ExpandOptions(workers=1, progress=False, seed=11))
    written = {(r["source"], r["copy"]): r["image"]["bytes"] for r in rows(tmp_path / "out", "train")}
    assert all(data == written[key] for key, data in raw.items())


def test_a_source_in_an_object_store_gives_the_tiles_the_local_copy_gives(tmp_path, bucket):
    from conftest import upload

    source = make_scenes(tmp_path / "src", n=10, fmt="coco")
    upload(source, f"s3://{bucket}/scenes")
    tiles = {}
    for where in (str(source), f"s3://{bucket}/scenes"):
        studio = Studio(where, workdir=tmp_path)
        try:
            events = studio.prepare(BOXES, seed=3, copies=2, rows=3, pick=Pick("random", 2)).run()
            tiles[where] = {(e["source"], e["copy"]): studio.tiles.get(e["raw"].split("/")[-2] + "-raw")[0]
                            for e in events if e["type"] == "tile"}
            assert studio.command().startswith(f"augpipe expand {where} ")
        finally:
            studio.close()
    local, remote = tiles.values()
    assert len(local) == 9 and local == remote
