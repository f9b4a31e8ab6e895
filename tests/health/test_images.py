"""The image checks of the health report, on pictures with known problems planted."""

from __future__ import annotations

import json
import warnings
from collections import defaultdict

import cv2
import numpy as np
import pytest

from augpipe.decode import decode
from augpipe.demo import make_shapes
from augpipe.health.images import JUDGED, _components, _near_pairs, _outliers, facts, judge, measure
from conftest import peak_bytes
from planted_images import (
    blurry, bright, brightened, clean_files, cropped, dark, encode, grey, low_information, motion_blurred, night,
    object_on_white, planted, resized, snow, stored, triangle_on_white, varied,
)


def measured(files):
    return [measure(path, split, data, decode(data, 10**8).rgb) for path, split, data in files]


def flagged(problems) -> dict[str, set[str]]:
    """{check: the files it names}, those of a group (its first and `related`) included."""
    found = defaultdict(set)
    for p in problems:
        found[p.check] |= {p.path, *p.related}
    return found


def difference_hash(rgb) -> int:
    """The dHash of the whole picture (is each pixel of a 9×8 grey copy brighter than its right
    neighbour), as `inspect` compared pictures before the health report."""
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA)
    return int.from_bytes(np.packbits(grey[:, 1:] > grey[:, :-1]).tobytes(), "big")


def by_check(problems, check: str) -> dict[str, object]:
    return {p.path: p for p in problems if p.check == check}


@pytest.fixture(scope="module")
def planted_set():
    """(files, the files each check must name, their ImageStats, judge's problems)."""
    files, truth = planted(seed=0)
    stats = measured(files)
    return files, truth, stats, judge(stats)


def test_every_planted_problem_is_found_with_its_file_and_nothing_else(planted_set):
    _, truth, _, problems = planted_set
    found = flagged(problems)
    for check in JUDGED:
        assert found[check] == truth.get(check, set()), check


def test_duplicates_and_leaks_name_the_other_files_of_their_group(planted_set):
    problems = planted_set[3]
    assert by_check(problems, "exact_duplicate")["train/copy.bmp"].related == ("train/copy.png",)
    assert by_check(problems, "near_duplicate")["train/near.png"].related == ("train/near_small.jpg",)
    leak = by_check(problems, "exact_leak")["train/leak.png"]
    assert leak.related == ("val/leak.png",) and "train and val" in leak.detail
    assert by_check(problems, "near_leak")["train/seen.png"].related == ("val/seen_large.jpg",)
    grouped = [p for p in problems if p.related]
    assert len(grouped) == 4 == len({p.check for p in grouped})  # a group once, under its first file


def test_a_clean_dataset_reports_nothing():
    rng = np.random.default_rng(11)
    files = clean_files(rng, 40, "train") + clean_files(rng, 12, "val")
    assert judge(measured(files)) == []


def test_near_duplicates_are_found_across_sizes_and_jpeg_re_encoding():
    rng = np.random.default_rng(5)
    look = varied(rng, 320, 240)
    files = clean_files(rng, 20, None) + [
        ("look.png", None, encode(look)),
        ("look_half.jpg", None, encode(resized(look, 0.5), "jpg", quality=70)),
        ("look_large.jpg", None, encode(resized(look, 1.7), "jpg", quality=85)),
    ]
    near = by_check(judge(measured(files)), "near_duplicate")
    assert set(near) == {"look.png"} and near["look.png"].related == ("look_half.jpg", "look_large.jpg")
    assert "expand may put them in different splits" in near["look.png"].detail


def test_different_objects_on_flat_white_are_not_near_duplicates():
    rng = np.random.default_rng(3)
    objects = [object_on_white(rng, 240, 180) for _ in range(40)]
    hashes = [difference_hash(o) for o in objects]
    # the trap is there: a difference hash sees some of these as the same picture
    assert min(bin(a ^ b).count("1") for i, a in enumerate(hashes) for b in hashes[:i]) <= 4
    files = [(f"object_{i}.png", "train", encode(o)) for i, o in enumerate(objects)]
    assert judge(measured(files)) == []


def test_an_object_on_white_and_a_copy_whose_border_is_not_plain_are_compared_whole():
    rng = np.random.default_rng(14)
    product = object_on_white(rng, 240, 180)
    framed = product.copy()
    noise = rng.integers(0, 256, framed.shape, dtype=np.uint8)
    framed[:4], framed[-4:], framed[:, :4], framed[:, -4:] = noise[:4], noise[-4:], noise[:, :4], noise[:, -4:]
    files = clean_files(rng, 20, None) + [("product.png", None, encode(product)),
                                          ("framed.jpg", None, encode(resized(framed, 0.8), "jpg", quality=85))]
    stats = measured(files)
    assert stats[-2].box is not None and stats[-1].box is None
    assert flagged(judge(stats)) == {"near_duplicate": {"product.png", "framed.jpg"}}


def test_near_constant_pictures_are_low_information_not_duplicates_of_each_other():
    rng = np.random.default_rng(4)
    files = clean_files(rng, 20, "train") + [
        (f"flat_{i}.png", "train", encode(low_information(rng, 240, 180))) for i in range(5)]
    found = flagged(judge(measured(files)))
    assert found == {"low_information": {f"flat_{i}.png" for i in range(5)}}


def test_exact_copies_not_placed_yet_are_duplicates_and_say_whether_expand_keeps_them_together():
    rng = np.random.default_rng(6)
    same, pixels = varied(rng, 240, 180), varied(rng, 240, 180)
    files = clean_files(rng, 20, None) + [
        ("a/same.png", None, encode(same)), ("b/same.png", None, encode(same)),
        ("a/pixels.png", None, encode(pixels)), ("b/pixels.bmp", None, encode(pixels, "bmp")),
    ]
    problems = judge(measured(files))
    assert flagged(problems) == {"exact_duplicate": {"a/same.png", "b/same.png", "a/pixels.png", "b/pixels.bmp"}}
    exact = by_check(problems, "exact_duplicate")
    assert "expand keeps them in one split" in exact["a/same.png"].detail
    assert "expand may put them in different splits" in exact["a/pixels.png"].detail


def test_the_same_picture_in_two_splits_is_an_exact_leak_not_a_duplicate():
    rng = np.random.default_rng(7)
    picture = encode(varied(rng, 240, 180))
    files = clean_files(rng, 20, "train") + [("train/x.png", "train", picture), ("test/x.png", "test", picture)]
    assert flagged(judge(measured(files))) == {"exact_leak": {"train/x.png", "test/x.png"}}


def test_grayscale_is_reported_only_among_colour_images():
    rng = np.random.default_rng(8)
    colour = [varied(rng, 240, 180) for _ in range(20)]
    mostly_colour = [(f"{i}.png", None, encode(grey(c) if i == 0 else c)) for i, c in enumerate(colour)]
    half_grey = [(f"{i}.png", None, encode(grey(c) if i % 2 else c)) for i, c in enumerate(colour)]
    assert flagged(judge(measured(mostly_colour))) == {"grayscale": {"0.png"}}
    assert judge(measured(half_grey)) == []


def test_a_picture_stored_turned_is_measured_upright_and_flagged():
    rng = np.random.default_rng(9)
    upright = varied(rng, 240, 180)
    files = clean_files(rng, 20, None) + [
        ("upright.png", None, encode(upright)), ("turned.jpg", None, encode(stored(upright, 8), "jpg", orientation=8))]
    stats = measured(files)
    assert (stats[-1].width, stats[-1].height, stats[-1].exif_rotated) == (240, 180, True)
    assert flagged(judge(stats)) == {"exif_rotated": {"turned.jpg"}, "near_duplicate": {"upright.png", "turned.jpg"}}


def test_dark_and_bright_are_absolute_a_dataset_of_dim_pictures_is_not_dark():
    rng = np.random.default_rng(10)
    dim = [(f"dim_{i}.png", None, encode(dark(varied(rng, 240, 180), keep=0.6))) for i in range(20)]
    assert judge(measured(dim)) == []
    files = dim + [("night.png", None, encode(dark(varied(rng, 240, 180), keep=0.15))),
                   ("glare.png", None, encode(bright(varied(rng, 240, 180), keep=0.15)))]
    found = flagged(judge(measured(files)))
    assert (found["dark"], found["bright"]) == ({"night.png"}, {"glare.png"})


def test_blur_is_relative_a_dataset_of_soft_pictures_is_not_blurry():
    rng = np.random.default_rng(13)
    soft = [(f"soft_{i}.png", None, encode(blurry(varied(rng, 240, 180)))) for i in range(20)]
    assert judge(measured(soft)) == []
    sharp = clean_files(rng, 20, None)
    assert flagged(judge(measured(sharp + soft[:1]))) == {"blurry": {"soft_0.png"}}


def test_near_pairs_match_a_brute_force_count_of_differing_bits():
    rng = np.random.default_rng(12)
    hashes = rng.integers(0, 256, (700, 8), dtype=np.uint8)
    hashes[500:600] = hashes[:100] ^ np.packbits(rng.random((100, 64)) < 0.08, axis=1)  # about 5 bits flipped
    thumbs = np.zeros((700, 192), np.uint8)
    bits = np.unpackbits(hashes, axis=1).astype(int)
    expected = {(i, j) for i in range(700) for j in range(i + 1, 700) if (bits[i] != bits[j]).sum() <= 8}
    assert len(expected) >= 80
    assert set(zip(*(k.tolist() for k in _near_pairs(hashes, thumbs)))) == expected


def test_facts_count_the_problems_and_describe_the_sizes(planted_set):
    files, truth, stats, problems = planted_set
    f = json.loads(json.dumps(facts(stats, problems)))
    assert f["images"] == len(files) == sum(n for _, _, n in f["sizes"]) == sum(f["long_sides"]["counts"])
    assert f["counts"] == {check: len(truth.get(check, ())) for check in JUDGED}
    assert [1100, 820, 1] in f["sizes"] and f["grayscale"] == 1 and f["exif_rotated"] == 1
    assert f == facts(stats)
    assert judge([]) == [] and facts([])["images"] == 0


def test_a_group_of_copies_is_one_problem_however_large():
    rng = np.random.default_rng(15)
    frame = encode(varied(rng, 240, 180))
    files = clean_files(rng, 20, None) + [(f"frame_{i:03d}.png", None, frame) for i in range(300)]
    grouped = [(p.check, p.path, len(p.related)) for p in judge(measured(files)) if p.related]
    assert grouped == [("exact_duplicate", "frame_000.png", 299)]


def test_the_rarity_of_a_size_is_counted_without_comparing_every_pair():
    n = 20000
    setup = f"""
import numpy as np
from augpipe.health.images import _outliers
n = {n}
landscape_and_portrait = np.log(np.r_[np.full(n // 2 + 1, 256.0), np.full(n // 2 - 1, 1024.0)])
_outliers(landscape_and_portrait[:8], 2.0)  # what numpy imports on first use (numpy.ma: 10 MB) is not the arrays'"""
    assert peak_bytes(setup, "assert _outliers(landscape_and_portrait, 2.0) == []") < 20 * n * 8  # arrays of n, not n²/2
    few = np.log(np.r_[np.full(100, 256.0), [1024.0, 1030.0]])
    assert _outliers(few, 2.0) == [100, 101]


def test_motion_blur_along_any_direction_is_blurry_and_a_long_banner_is_not():
    rng = np.random.default_rng(16)
    blurred = {f"moved_{length}.png": motion_blurred(varied(rng, 240, 180), length) for length in (9, 15, 25)}
    blurred["moved_diagonally.png"] = motion_blurred(varied(rng, 240, 180), 9, diagonal=True)
    files = (clean_files(rng, 30, None) + [(path, None, encode(image)) for path, image in blurred.items()]
             + [("banner.png", None, encode(varied(rng, 1024, 128)))])
    assert flagged(judge(measured(files)))["blurry"] == set(blurred)


def test_a_picture_without_edges_is_blurry_in_words_without_infinity_or_warnings():
    rng = np.random.default_rng(17)
    yy, xx = np.mgrid[0:180, 0:240]
    gradient = np.dstack([xx, yy, np.full_like(xx, 128)]).astype(np.uint8)
    files = clean_files(rng, 20, None) + [("gradient.png", None, encode(gradient))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problems = judge(measured(files))
    assert [p.path for p in problems] == ["gradient.png"]
    assert "inf" not in problems[0].detail and "no edge" in problems[0].detail


def test_brightened_and_cropped_copies_are_near_duplicates_and_pictures_of_one_kind_are_not():
    rng = np.random.default_rng(18)
    look, seen = varied(rng, 240, 180), varied(rng, 240, 180)
    files = clean_files(rng, 20, None) + [
        ("look.png", None, encode(look)), ("look_brighter.jpg", None, encode(brightened(look, 25), "jpg")),
        ("seen.png", None, encode(seen)), ("seen_cropped.jpg", None, encode(cropped(resized(seen, 0.8), 0.03), "jpg")),
        ("triangle_large.png", None, encode(triangle_on_white(240, 180, 120))),
        ("triangle_small.png", None, encode(triangle_on_white(240, 180, 100))),
    ]
    near = by_check(judge(measured(files)), "near_duplicate")
    assert {path: p.related for path, p in near.items()} == {"look.png": ("look_brighter.jpg",),
                                                            "seen.png": ("seen_cropped.jpg",)}


def test_the_demo_shapes_have_no_near_duplicates(tmp_path):
    folder = make_shapes(tmp_path / "shapes")  # drawn one by one: no picture is a copy of another
    files = [(str(p.relative_to(folder)), None, p.read_bytes()) for p in sorted(folder.rglob("*.jpg"))]
    assert len(files) >= 200
    assert flagged(judge(measured(files)))["near_duplicate"] == set()


def test_a_dataset_of_night_or_snow_scenes_flags_only_its_much_darker_or_brighter_pictures():
    rng = np.random.default_rng(19)
    for scene, check, extreme in ((night, "dark", 0.02), (snow, "bright", 0.02)):
        files = [(f"scene_{i}.png", None, encode(scene(rng, 240, 180))) for i in range(20)]
        assert judge(measured(files)) == []
        files.append(("extreme.png", None, encode(scene(rng, 240, 180, keep=extreme) // 4 * 4)))
        problems = judge(measured(files))
        assert flagged(problems) == {check: {"extreme.png"}} and "most of the dataset" in problems[0].detail


def test_sizes_say_smaller_or_larger_and_a_black_picture_is_not_also_grayscale():
    rng = np.random.default_rng(20)
    files = clean_files(rng, 30, None) + [
        ("small.png", None, encode(varied(rng, 32, 24))), ("large.png", None, encode(varied(rng, 1200, 900))),
        ("black.png", None, encode(np.zeros((180, 240, 3), np.uint8)))]
    problems = judge(measured(files))
    sizes = by_check(problems, "odd_size")
    assert "smaller than the median" in sizes["small.png"].detail and "larger" in sizes["large.png"].detail
    assert flagged(problems)["low_information"] == {"black.png"} and "grayscale" not in flagged(problems)


def test_components_match_a_walk_of_the_pairs():
    rng = np.random.default_rng(21)
    i, j = rng.integers(0, 300, 200), rng.integers(0, 300, 200)
    label = _components(300, i, j)
    neighbours = defaultdict(set)
    for a, b in zip(i.tolist(), j.tolist()):
        neighbours[a].add(b)
        neighbours[b].add(a)
    for start in range(300):
        seen, todo = {start}, [start]
        while todo:
            for other in neighbours[todo.pop()] - seen:
                seen.add(other)
                todo.append(other)
        assert label[start] == min(seen)


def test_a_small_crisp_object_on_a_flat_background_is_not_blurry_and_blurred_it_is():
    """A new user's: a 65 × 44 box on a flat background (its edges under 1% of the pixels) was
    "sharpness 0.000, no edge at all": the edges were chosen as the strongest 1%, most of them flat."""
    rng = np.random.default_rng(19)
    scene = np.full((180, 314, 3), (40, 90, 60), np.uint8)
    scene[20:64, 230:295] = (230, 200, 40)
    files = clean_files(rng, 20, None) + [("box.png", None, encode(scene, "png")),
                                          ("box_blurred.png", None, encode(blurry(scene), "png"))]
    stats = measured(files)
    assert stats[-2].sharpness > 0 and stats[-1].sharpness > 0  # the blurred box's edges change by a level still
    assert flagged(judge(stats)).get("blurry") == {"box_blurred.png"}
