"""From a scan to shard tasks (augpipe/plan.py): splits, balance, shard boundaries."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import UsageError
from augpipe.formats import scan
from augpipe.formats.base import Objects, Scan, SourceFile
from augpipe.plan import make_plan, repeat_factors
from augpipe.recipe import load_recipe
from augpipe.targets import for_scan
from conftest import class_scenes, duplicated_folder, make_folder, make_scenes, recipe, rows, shard_hashes

QUIET = dict(progress=False, workers=1)


def test_identical_files_always_share_a_split(tmp_path):
    data = duplicated_folder(tmp_path / "data")
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(val_fraction=0.5, **QUIET))
    table = pq.read_table(tmp_path / "out", columns=["source", "source_sha256", "split"]).to_pylist()
    splits_of = {}
    for r in table:
        splits_of.setdefault(r["source_sha256"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert m["counts"]["validation"]["sources"] > 0


def test_validation_holds_originals_only_and_copies_stay_with_their_source(folder, tmp_path):
    out = tmp_path / "out"
    expand(folder, "flips", out, ExpandOptions(val_fraction=0.3, **QUIET))
    val, train = rows(out, "validation"), rows(out, "train")
    assert val and all(r["copy"] == 0 and r["transforms"] == "[]" for r in val)
    assert not {r["source"] for r in val} & {r["source"] for r in train}
    assert {r["copy"] for r in train} == {0, 1, 2}


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


def test_balance_gives_minority_classes_more_copies(tmp_path):
    data = tmp_path / "data"
    make_folder(data, classes=("many",), per_class=20)
    make_folder(data, classes=("few",), per_class=5)
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(balance=True, val_fraction=0, **QUIET))
    by_class = m["counts"]["train"]["by_class"]
    assert by_class["many"] == 60 and by_class["few"] == 60
    plain = expand(data, "flips", tmp_path / "plain", ExpandOptions(val_fraction=0, **QUIET))
    assert plain["counts"]["train"]["by_class"]["few"] == 15


def test_the_last_shards_are_smaller_so_that_workers_finish_together(tmp_path):
    from augpipe.formats import scan
    from augpipe.plan import make_plan
    from augpipe.recipe import load_recipe

    data = make_folder(tmp_path / "data", classes=("a",), per_class=400)
    found = scan(str(data))
    shard_bytes = -(-sum(f.size for f in found.files) // 8)  # 8 full shares of the split
    plan = make_plan(found, load_recipe("flips"), 0, 0.0, False, shard_bytes)
    sizes = [len(s.sources) for s in plan.shards]
    assert len(sizes) == 11 and sum(sizes) == 400
    full = sizes[0]
    assert all(abs(n - full) <= 2 for n in sizes[:7])
    assert all(abs(n - full * share) <= 2 for n, share in zip(sizes[7:], (1 / 2, 1 / 4, 1 / 8, 1 / 8)))


# ---------------------------------------------------------------- donors of multi-image steps

def _mix_plan(tmp_path, transforms: str, seed: int = 0, val_fraction: float = 0.4):
    from augpipe.formats import scan
    from augpipe.plan import make_plan
    from conftest import recipe

    found = scan(str(make_scenes(tmp_path / "coco", n=20)))
    return make_plan(found, recipe(transforms, copies=3), 3, val_fraction, False, 1 << 30, seed=seed)


def _train_items(plan):
    return [it for s in plan.shards if s.split == "train" for it in s.sources]


def test_donors_come_from_the_training_split_only_and_never_the_row_itself(tmp_path):
    plan = _mix_plan(tmp_path, "[{Mosaic: {p: 1}}, {MixUp: {p: 0.5}}]")
    train = {it.relpath for it in _train_items(plan)}
    validation = {it.relpath for s in plan.shards if s.split == "validation" for it in s.sources}
    assert validation and train
    from augpipe.plan import SPARES

    for it in _train_items(plan):
        assert [c for c, _ in it.donors] == [1, 2, 3]  # every augmented copy, never the original
        assert it.donors_wanted == (3, 1)  # a 2×2 mosaic's three other cells, then MixUp's one
        for _, (mosaic, mixup) in it.donors:
            donors = mosaic + mixup
            assert (len(mosaic), len(mixup)) == (3 + SPARES, 1 + SPARES)  # each step's spares after its own
            assert len({d.relpath for d in donors}) == 4 + 2 * SPARES  # none twice in a row while there are others
            assert {d.relpath for d in donors} <= train - {it.relpath}
            assert all(d.copies == () and d.sha256 is None for d in donors)
    assert all(not it.donors for s in plan.shards if s.split == "validation" for it in s.sources)


def test_donors_depend_on_the_row_seed_only(tmp_path):
    def donors(plan):
        return {it.relpath: [(c, [d.relpath for step in steps for d in step]) for c, steps in it.donors]
                for it in _train_items(plan)}

    first = donors(_mix_plan(tmp_path / "a", "[{MixUp: {p: 1}}]"))
    assert first == donors(_mix_plan(tmp_path / "b", "[{MixUp: {p: 1}}]"))
    assert first != donors(_mix_plan(tmp_path / "c", "[{MixUp: {p: 1}}]", seed=1))
    drawn = [d for ds in first.values() for _, names in ds for d in names]
    assert len(set(drawn)) > len(first) / 2  # spread over the split, not a few favourites


def test_a_paste_draws_donors_with_objects_and_rare_classes_more_often(tmp_path):
    from collections import Counter

    from augpipe.formats import scan
    from augpipe.plan import make_plan
    from conftest import recipe

    data = make_scenes(tmp_path / "coco", n=30)
    found = scan(str(data))
    cats = {f.relpath: set(f.target.categories) for f in found.files}
    rare = min((0, 1), key=lambda c: sum(c in v for v in cats.values()))

    def share(transforms):
        plan = make_plan(found, recipe(transforms, copies=20), 20, 0.0, False, 1 << 30, seed=3)
        drawn = Counter(d.relpath for s in plan.shards for it in s.sources for _, steps in it.donors
                        for step in steps for d in step)
        return sum(n for name, n in drawn.items() if rare in cats[name]) / sum(drawn.values())

    assert share("[{CopyPaste: {p: 1, rare_classes: true}}]") > share("[{CopyPaste: {p: 1}}]")
# ---------------------------------------------------------------- detection's --balance: repeat factors

def detection_scan(held, classes=("a", "b", "c")) -> Scan:
    """Training images, image i holding an object of each class index in held[i]: no pixels needed."""
    files = [SourceFile(f"i{i:03d}.png", "train", None, 100,
                        target=Objects(tuple((1.0, 1.0, 4.0, 4.0) for _ in h), tuple(h))) for i, h in enumerate(held)]
    return Scan("data", files, list(classes), True, True, task="detection", format="coco")


def planned(found: Scan, copies: int = 2, rec=None, **kw) -> dict[str, tuple]:
    plan = make_plan(found, rec or load_recipe("flips"), copies, 0.0, True, 2**30, **kw)
    return {s.relpath: s.copies for shard in plan.shards for s in shard.sources}


# a in 6 of the 10 images, b in 3, c in 1; 3 images hold nothing
BY_HAND = [(0, 2), (0, 1), (0, 1), (1,), (0,), (0, 0), (0,), (), (), ()]


def test_repeat_factors_by_hand():
    found = detection_scan(BY_HAND)
    factors = repeat_factors(found.files, for_scan(found), found.classes, 0.4)
    assert factors.image_share == {"a": 0.6, "b": 0.3, "c": 0.1}
    # r = max(1, sqrt(0.4 / f)): a sqrt(2/3) < 1, so 1; b sqrt(4/3); c sqrt(4)
    assert factors.by_class == pytest.approx({"a": 1.0, "b": 1.1547, "c": 2.0}, abs=1e-4)
    assert factors.by_image["i000.png"] == pytest.approx(2.0) and factors.by_image["i007.png"] == 1.0
    assert factors.objects == {"a": 7, "b": 3, "c": 1}


def test_an_images_rows_are_its_rows_times_its_repeat_factor():
    copies = planned(detection_scan(BY_HAND), repeat_threshold=0.4)
    assert copies["i000.png"] == (0, 1, 2, 3, 4, 5)  # (2 copies + the original) × 2, c's factor
    assert all(copies[f"i00{i}.png"] in ((0, 1, 2), (0, 1, 2, 3)) for i in (1, 2, 3))  # 3 × 1.1547, b's
    assert all(copies[f"i00{i}.png"] == (0, 1, 2) for i in range(4, 10))  # a's factor is 1; backgrounds


def test_without_originals_the_copies_alone_are_repeated():
    copies = planned(detection_scan(BY_HAND), rec=recipe("[HorizontalFlip]", copies=2, keep_original=False),
                     repeat_threshold=0.4)
    assert copies["i000.png"] == (1, 2, 3, 4) and copies["i009.png"] == (1, 2)


def test_by_default_the_rarest_class_is_lifted_most_and_the_commonest_and_backgrounds_never():
    copies = planned(detection_scan(BY_HAND))  # t = 0.6, a's share: b √2, c √6
    n = {rel: len(c) for rel, c in copies.items()}
    assert n["i000.png"] in (7, 8) and all(n[f"i00{i}.png"] in (4, 5) for i in (1, 2, 3))
    assert all(n[f"i00{i}.png"] == 3 for i in range(4, 10))


def test_rows_are_rounded_by_each_images_own_stable_draw():
    held = [(0,)] * 50 + [(0, 1)] * 50  # b in half the images: sqrt(1 / 0.5) = 1.414, 3 rows -> 4.24
    copies = planned(detection_scan(held))
    lifted = [len(copies[f"i{i:03d}.png"]) for i in range(50, 100)]
    assert set(lifted) == {4, 5} and 4 < sum(lifted) / 50 < 4.5
    reordered = detection_scan(held)
    reordered.files.reverse()
    assert planned(reordered) == copies == planned(detection_scan(held))


def test_balanced_rows_do_not_depend_on_the_worker_count(tmp_path):
    data = class_scenes(tmp_path / "data", [[0, 0], [0], [0, 1], [1], [2], [0, 2], []] * 3)
    for workers in (1, 2):
        expand(data, "flips", tmp_path / f"w{workers}", ExpandOptions(balance=True, val_fraction=0.2, progress=False,
                                                                       workers=workers, shard_size=4000))
    assert len(shard_hashes(tmp_path / "w1")) > 2 and shard_hashes(tmp_path / "w1") == shard_hashes(tmp_path / "w2")


def test_repeat_threshold_is_refused_where_balance_does_not_repeat(tmp_path):
    classes = scan(str(make_folder(tmp_path / "cls", per_class=2)))
    with pytest.raises(UsageError, match="--repeat-threshold is for the repeat factors of --balance on detection"):
        make_plan(classes, load_recipe("flips"), 2, 0.0, True, 2**30, repeat_threshold=0.5)


def _mask_folder(root, held: list[list[int]]):
    """A mask folder (classes background, road, sign): image i's mask holds a patch of each class in
    held[i]; an empty list is a mask of background only."""
    import cv2
    import numpy as np

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nroad\nsign\n")
    for i, values in enumerate(held):
        mask = np.zeros((32, 48), np.uint8)
        for k, v in enumerate(values):
            mask[4:20, 4 + 20 * k:16 + 20 * k] = v
        cv2.imwrite(str(root / "masks" / f"m{i:02d}.png"), mask)
        cv2.imwrite(str(root / "images" / f"m{i:02d}.png"), np.dstack([mask * 100] * 3))
    return root


def test_segmentation_balance_repeats_images_whose_masks_hold_rare_classes(tmp_path):
    data = _mask_folder(tmp_path / "seg", [[1]] * 10 + [[1, 2]] * 2 + [[]] * 3)
    m = expand(data, "flips", tmp_path / "out", ExpandOptions(balance=True, val_fraction=0, **QUIET))
    b = m["balance"]
    assert (b["objects_before"], m["counted"]) == ({"road": 12, "sign": 2}, "images")
    assert b["repeat_factor"]["sign"] == pytest.approx((12 / 2) ** 0.5, abs=1e-4)
    per_source = Counter(r["source"].removeprefix("images/") for r in rows(tmp_path / "out"))
    assert all(per_source[f"m{i:02d}.png"] == 3 for i in (*range(10), 12, 13, 14))  # road alone, backgrounds
    assert all(per_source[f"m{i:02d}.png"] in (7, 8) for i in (10, 11))  # 3 × 2.45
    signs = sum(per_source[f"m{i}.png"] for i in (10, 11))
    assert m["counts"]["train"]["by_class"] == {"road": 10 * 3 + signs, "sign": signs}
    (data / "masks" / "m03.png").write_bytes(b"not a png")
    m = expand(data, "flips", tmp_path / "again", ExpandOptions(balance=True, val_fraction=0, **QUIET))
    assert [s["path"] for s in m["skipped"]] == ["images/m03.png"]
