"""Keypoints: left and right swapped by a mirror image only, every object's K keypoints kept in
order (visibility 0 where one leaves the image), refused recipes, the row's Hugging Face features
and the torch form."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from augpipe.errors import SkipInput, SourceError, UsageError
from augpipe.recipe import parse_recipe
from augpipe.row import RowSpec, image_column
from augpipe.sample import SourceItem, apply_recipe, augment_sample
from augpipe.targets.keypoints import Keypoints, KeypointsKind, options, paired_by_name

FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = range(5)
W, H = 120, 100


@dataclass(frozen=True)
class Annotated:
    """An image's objects as a format gives them, with per-object `fields` (keypoints)."""

    boxes: tuple
    categories: tuple
    ids: tuple = ()
    segments: tuple | None = None
    normalised: bool = False
    iscrowd: tuple = ()
    fields: dict = field(default_factory=dict)


def face() -> Keypoints:
    """One face: eyes at 40 and 60, the left ear hidden (COCO's 1), the right ear not labelled."""
    points = np.array([[[50, 45, 2], [40, 30, 2], [60, 30, 2], [30, 35, 1], [0, 0, 0]]], float)
    return Keypoints(np.array([[20.0, 10, 60, 70]]), np.array([0]), np.array([7]), None, points=points)


def nobody() -> Keypoints:
    return Keypoints(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64), None, points=np.zeros((0, 5, 3)))


def applied(text: str, kind: KeypointsKind, state: Keypoints | None = None, seed: int = 1):
    recipe = parse_recipe(text)
    kind.check_recipe(recipe)
    image, out, _ = apply_recipe(np.zeros((H, W, 3), np.uint8), recipe, seed, kind.for_recipe(recipe),
                                 state if state is not None else face())
    return image, out


def moved_only(text: str) -> np.ndarray:
    """Where the transforms put each keypoint, with no swap (names that say no side)."""
    return applied(text, KeypointsKind(False, ("a", "b", "c", "d", "e")))[1].points[0]


FLIP = "transforms: [{HorizontalFlip: {p: 1}}]"


def test_flip_idx_from_left_and_right_names():
    assert paired_by_name(FACE) == (0, 2, 1, 4, 3)
    assert paired_by_name(("nose", "left_eye")) is None  # a side without its partner: no map
    assert paired_by_name(("a", "b")) is None
    assert KeypointsKind(False, FACE, flip_idx=(0, 1, 2, 3, 4)).flip_idx == (0, 1, 2, 3, 4)  # given wins


def test_a_horizontal_flip_swaps_left_and_right():
    _, out = applied(FLIP, KeypointsKind(False, FACE))
    moved = moved_only(FLIP)
    assert out.points[0, LEFT_EYE].tolist() == moved[RIGHT_EYE].tolist()
    assert out.points[0, RIGHT_EYE].tolist() == moved[LEFT_EYE].tolist()
    assert out.points[0, LEFT_EYE, 0] == pytest.approx(W - 1 - 60)  # the mirror of the right eye, on the left
    assert out.points[0, NOSE].tolist() == moved[NOSE].tolist()
    # visibility travels with its keypoint: the hidden left ear is now the (hidden) right one
    assert out.points[0, RIGHT_EAR, 2] == 1 and out.points[0, LEFT_EAR].tolist() == [0, 0, 0]
    assert out.ids.tolist() == [7]


def test_two_flips_turn_the_image_and_swap_nothing():
    text = "transforms: [{HorizontalFlip: {p: 1}}, {VerticalFlip: {p: 1}}]"
    _, out = applied(text, KeypointsKind(False, FACE))
    assert out.points[0].tolist() == moved_only(text).tolist()
    assert out.points[0, LEFT_EYE, 0] > out.points[0, RIGHT_EYE, 0]  # upside down: the left eye on the right


@pytest.mark.parametrize("text", ["transforms: [{Transpose: {p: 1}}]", "transforms: [{VerticalFlip: {p: 1}}]",
                                  "transforms: [{Affine: {scale: {x: [-1, -1], y: [1, 1]}, p: 1}}]"])
def test_a_transpose_a_vertical_flip_and_a_negative_scale_swap(text):
    _, out = applied(text, KeypointsKind(False, FACE))
    moved = moved_only(text)
    assert out.points[0, LEFT_EYE].tolist() == moved[RIGHT_EYE].tolist()
    assert out.points[0, LEFT_EAR].tolist() == moved[RIGHT_EAR].tolist()


def test_a_rotation_by_90_degrees_swaps_nothing():
    text = "transforms: [{RandomRotate90: {p: 1}}]"
    assert applied(text, KeypointsKind(False, FACE))[1].points[0].tolist() == moved_only(text).tolist()


def test_d4_swaps_exactly_when_its_element_mirrors():
    import json

    text = "transforms: [{D4: {p: 1}}]"
    kind, plain = KeypointsKind(False, FACE), KeypointsKind(False, ("a", "b", "c", "d", "e"))
    seen = set()
    for seed in range(24):
        recipe = parse_recipe(text)
        _, out, applied = apply_recipe(np.zeros((H, W, 3), np.uint8), recipe, seed, kind, face())
        moved = apply_recipe(np.zeros((H, W, 3), np.uint8), recipe, seed, plain, face())[1].points[0]
        element = json.loads(applied)[0][1]["group_element"]
        seen.add(element)
        swapped = out.points[0, LEFT_EYE].tolist() == moved[RIGHT_EYE].tolist()
        assert swapped == (element in ("h", "v", "t", "hvt")), element
    assert len(seen) >= 6


@pytest.mark.parametrize("transform", ["GridElasticDeform: {num_grid_xy: [4, 4], magnitude: 10, p: 1}",
                                       "ElasticTransform: {alpha: 300, sigma: 10, p: 1}",
                                       "ThinPlateSpline: {p: 1}", "CoarseDropout: {p: 1}"])
def test_distortions_and_dropout_never_swap_and_keep_every_keypoint_in_place(transform):
    text = f"transforms: [{{{transform}}}]"
    for seed in range(8):
        _, out = applied(text, KeypointsKind(False, FACE), seed=seed)
        _, moved = applied(text, KeypointsKind(False, ("a", "b", "c", "d", "e")), seed=seed)
        assert out.points.shape == (1, 5, 3) and out.points.tolist() == moved.points.tolist()
        # one that left the image (a distortion removes it) is (0, 0, 0) in its place
        assert all(v in (0, 1, 2) for v in out.points[0, :, 2]) and out.points[0, RIGHT_EAR].tolist() == [0, 0, 0]


def test_an_object_cut_in_pieces_keeps_each_keypoint_in_one_piece():
    for seed in range(8):
        _, out = applied("transforms: [{RandomGridShuffle: {grid: [2, 2], p: 1}}]", KeypointsKind(False, FACE),
                         seed=seed)
        assert out.points.shape[1:] == (5, 3) and out.ids.tolist() == [7] * len(out.ids)
        assert (out.points[:, :, 2] > 0).sum(axis=0).tolist() == [1, 1, 1, 1, 0]


def test_a_keypoint_pushed_out_by_a_crop_becomes_visibility_0_in_its_place():
    image, out = applied("transforms: [{Crop: {x_min: 0, y_min: 0, x_max: 45, y_max: 100, p: 1}}]",
                         KeypointsKind(False, FACE))
    assert image.shape[:2] == (100, 45)
    assert out.points.shape == (1, 5, 3)
    assert out.points[0].tolist() == [[0, 0, 0], [40, 30, 2], [0, 0, 0], [30, 35, 1], [0, 0, 0]]


def test_an_object_whose_box_is_dropped_goes_with_its_keypoints():
    two = Keypoints(np.array([[20.0, 10, 20, 20], [80, 60, 30, 30]]), np.array([0, 0]), np.array([7, 8]), None,
                    points=np.array([[[25, 15, 2]] * 5, [[90, 70, 2]] * 5], float))
    _, out = applied("transforms: [{Crop: {x_min: 0, y_min: 0, x_max: 60, y_max: 50, p: 1}}]",
                     KeypointsKind(False, FACE), two)
    assert out.ids.tolist() == [7] and out.points.shape == (1, 5, 3) and out.dropped == 1
    assert out.points[0, :, 2].tolist() == [2] * 5


def test_a_recipe_that_can_flip_is_refused_on_side_names_without_a_flip_map():
    unpaired = KeypointsKind(False, ("nose", "left_hand"))
    for text in [FLIP, "transforms: [{OneOf: {transforms: [{Transpose: {p: 1}}], p: 0.5}}]",
                 "transforms: [{Affine: {scale: [-1.2, 1.2], p: 1}}]"]:
        with pytest.raises(UsageError, match="left and right names but no flip map") as info:
            unpaired.check_recipe(parse_recipe(text, "r.yaml"))
        assert "\n" not in str(info.value) and str(info.value).startswith("r.yaml: ")
        assert "(left_hand has no right_hand)" in str(info.value)
    assert unpaired.check_recipe(parse_recipe("transforms: [{Affine: {scale: [0.8, 1.2], p: 1}}]")) == []
    assert KeypointsKind(False, ("a", "b")).check_recipe(parse_recipe(FLIP)) == []  # no side: nothing to swap
    assert KeypointsKind(False, ("nose", "left_hand"), flip_idx=(0, 1)).check_recipe(parse_recipe(FLIP)) == []
    assert KeypointsKind(False, FACE).check_recipe(parse_recipe(FLIP)) == []  # paired by name


def test_a_recipe_s_keypoint_flip_map_is_the_flip_map():
    hands = KeypointsKind(False, ("nose", "left_hand", "right_paw"))  # sides, but not in pairs
    flip = parse_recipe(FLIP, "r.yaml")
    mapped = parse_recipe(f"keypoint_flip: {{left_hand: right_paw}}\n{FLIP}", "r.yaml")
    assert mapped.kind_options == {"keypoint_flip": {"left_hand": "right_paw"}} and flip.kind_options == {}
    assert hands.check_recipe(mapped) == [] and hands.for_recipe(mapped).flip_idx == (0, 2, 1)
    assert hands.for_recipe(flip) is hands
    points = np.array([[[50, 45, 2], [40, 30, 2], [60, 30, 1]]], float)
    state = Keypoints(np.array([[20.0, 10, 60, 70]]), np.array([0]), np.array([7]), None, points=points)
    out = apply_recipe(np.zeros((H, W, 3), np.uint8), mapped, 1, hands, state)[1]  # apply_recipe applies the map
    assert out.points[0, 1].tolist() == [W - 1 - 60, 30, 1]  # the right paw's mirror, hidden as it was
    both_ways = parse_recipe(f"keypoint_flip: {{left_hand: right_paw, right_paw: left_hand}}\n{FLIP}", "r.yaml")
    assert hands.for_recipe(both_ways).flip_idx == (0, 2, 1)
    # the map's pairs win over the dataset's (its flip_idx, or its names'); the keypoints it does
    # not name keep theirs (a map of one pair left every other pair unswapped), but for one whose
    # partner the map took
    face = KeypointsKind(False, FACE)
    for line, flip_idx in [("{nose: nose}", (0, 2, 1, 4, 3)), ("{left_eye: right_eye}", (0, 2, 1, 4, 3)),
                           ("{left_eye: left_eye}", (0, 1, 2, 4, 3)), ("{left_eye: left_ear}", (0, 3, 2, 1, 4))]:
        assert face.for_recipe(parse_recipe(f"keypoint_flip: {line}\n{FLIP}")).flip_idx == flip_idx, line
    given = KeypointsKind(False, FACE, flip_idx=(0, 1, 2, 4, 3))  # the dataset's own: ears only
    assert given.for_recipe(parse_recipe(f"keypoint_flip: {{left_eye: right_eye}}\n{FLIP}")).flip_idx == (0, 2, 1, 4, 3)


def test_a_keypoint_flip_map_is_taken_as_it_is_before_a_dataset_names_the_keypoints(cli, tmp_path):
    """`augpipe check` has no dataset: the map's names are checked when one is read."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"keypoint_flip: {{left_hand: right_paw}}\n{FLIP}")
    assert KeypointsKind().for_recipe(parse_recipe(recipe.read_text())).flip_idx is None
    result = cli("check", str(recipe), "--task", "keypoints")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("line, why", [
    ("keypoint_flip: {left_paw: right_paw}", "r.yaml: keypoint_flip names 'left_paw', not one of the keypoints "
                                             r"\(nose, left_hand, right_paw\)$"),
    ("keypoint_flip: {left_hand: right_paw, nose: left_hand}", "r.yaml: keypoint_flip pairs 'left_hand' with two "
                                                               "keypoints; each swaps with one$")])
def test_a_keypoint_flip_map_of_unknown_names_or_a_name_twice_is_one_line(line, why):
    hands = KeypointsKind(False, ("nose", "left_hand", "right_paw"))
    with pytest.raises(UsageError, match=why):
        hands.check_recipe(parse_recipe(f"{line}\n{FLIP}", "r.yaml"))


def test_a_keypoint_flip_that_is_not_a_map_of_names_is_refused_with_the_recipe():
    from augpipe.errors import RecipeError

    for line in ("keypoint_flip: [left_eye, right_eye]", "keypoint_flip: {left_eye: [right_eye]}"):
        with pytest.raises(RecipeError, match="r.yaml: field 'keypoint_flip"):
            parse_recipe(f"{line}\n{FLIP}", "r.yaml")


def test_output_resize_moves_keypoints_by_the_scale():
    kind = KeypointsKind(False, FACE)
    recipe = parse_recipe("output: {resize: {width: 240, height: 50}}\ntransforms: [{HorizontalFlip: {p: 1}}]")
    item = SourceItem("a.png", None, (0, 1), target=Annotated(((20.0, 10.0, 60.0, 70.0),), (0,), (7,),
                                                             fields={"keypoints": (tuple(face().points.ravel()),)}))
    png = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))[1].tobytes()
    original, flipped = augment_sample(png, item, recipe, 0, 10**8, kind=kind).rows
    scale = np.array([240 / W, 50 / H])
    points = np.array([[p["x"], p["y"], p["visibility"]] for p in original["objects"]["keypoints"]]).transpose(0, 2, 1)
    assert points[0, :, :2] == pytest.approx(face().points[0, :, :2] * scale * (face().points[0, :, 2:] > 0))
    assert points[0, :, 2].tolist() == [2, 2, 2, 1, 0]
    assert original["objects"]["bbox"][0].tolist() == pytest.approx([40, 5, 120, 35])
    mirrored = np.array([flipped["objects"]["keypoints"][0][c] for c in ("x", "y", "visibility")]).T
    assert mirrored[LEFT_EYE, :2] == pytest.approx([(W - 1 - 60) * 2, 15])  # the right eye's mirror, resized
    assert mirrored[RIGHT_EAR].tolist() == [pytest.approx((W - 1 - 30) * 2), 17.5, 1]


def test_a_reflecting_border_is_refused():
    with pytest.raises(UsageError, match="border_mode 4 mirrors keypoints"):
        KeypointsKind(False, FACE).check_recipe(parse_recipe("transforms: [{Rotate: {limit: 10, border_mode: 4}}]"))


def test_dataset_options_are_checked():
    got = options({"keypoint_names": list(FACE), "skeleton": [[1, 2]], "flip_idx": [0, 2, 1, 4, 3]}, "here")
    assert KeypointsKind(False, **got).flip_idx == (0, 2, 1, 4, 3)
    with pytest.raises(SourceError, match="not a permutation"):
        options({"keypoint_names": ["a", "b"], "flip_idx": [0, 0]}, "here")
    with pytest.raises(SourceError, match="skeleton pair"):
        options({"keypoint_names": ["a", "b"], "skeleton": [[0, 2]]}, "here")


def test_the_kind_is_derived_from_a_scan_and_from_the_manifest_it_writes():
    scan = SimpleNamespace(files=[], kind_options={"keypoint_names": list(FACE), "skeleton": [[1, 2]]})
    kind = KeypointsKind.of_scan(scan)
    assert (kind.keypoint_names, kind.skeleton, kind.flip_idx, kind.with_masks) == (FACE, ((1, 2),), (0, 2, 1, 4, 3),
                                                                                   False)
    manifest = {"task": "keypoints", "classes": ["face"], **kind.manifest_fields()}
    again = KeypointsKind.of_manifest(manifest)
    assert again.manifest_fields() == kind.manifest_fields() and again.flip_idx == kind.flip_idx


def source(points, normalised=False, boxes=((20.0, 10.0, 60.0, 70.0),)):
    target = Annotated(boxes, (0,) * len(boxes), ids=tuple(100 + i for i in range(len(boxes))), normalised=normalised,
                       fields={"keypoints": points})
    return SourceItem("a.png", None, (0,), target=target), SimpleNamespace(rgb=np.zeros((H, W, 3), np.uint8))


def test_loading_takes_keypoints_in_pixels_or_fractions_and_refuses_bad_ones():
    kind = KeypointsKind(False, ("a", "b"))
    state = kind.load(*source(((30, 20, 2, 0, 0, 0),)), None)
    assert state.points.tolist() == [[[30, 20, 2], [0, 0, 0]]] and state.ids.tolist() == [100]
    yolo = kind.load(*source(((0.5, 0.5, 1, 0.25, 0.2, 2),), normalised=True, boxes=((0.5, 0.5, 0.5, 0.5),)), None)
    assert yolo.points.tolist() == [[[60, 50, 1], [30, 20, 2]]]
    for points, why in [(((30, 20, 2),), "3 keypoint values, not 3 × 2"), (((30, 20, 3, 0, 0, 0),), "visibility 3"),
                        (((300, 20, 2, 0, 0, 0),), "outside the 120×100 image")]:
        with pytest.raises(SkipInput, match=why):
            kind.load(*source(points), None)


def test_verify_finds_keypoints_outside_the_image_or_of_another_count():
    kind = KeypointsKind(False, FACE)
    row = kind.values(face(), np.zeros((H, W, 3), np.uint8))
    assert kind.verify(row, W, H, ["face"]) == []
    row["objects"]["keypoints"][0]["x"][1] = 500
    row["objects"]["keypoints"][0]["visibility"][2] = 5
    problems = kind.verify(row, W, H, ["face"])
    assert any("keypoint 1 (500.0, 30.0): outside" in p for p in problems)
    assert any("keypoint 2: visibility 5" in p for p in problems)
    assert KeypointsKind(False, ("a",)).verify(kind.values(face(), np.zeros((H, W, 3), np.uint8)), W, H, ["f"]) \
        == ["object 0: 5 keypoints, not 1"]


def test_draw_marks_left_and_right_in_their_own_colours():
    from augpipe.targets.keypoints import LEFT, RIGHT

    kind = KeypointsKind(False, FACE, skeleton=[(1, 2)])
    drawn = kind.draw(np.zeros((H, W, 3), np.uint8), kind.values(face(), np.zeros((H, W, 3), np.uint8)), ["face"])
    assert tuple(drawn[30, 40]) == LEFT and tuple(drawn[30, 60]) == RIGHT
    assert tuple(drawn[35, 30]) == (0, 0, 0) and tuple(drawn[35, 33]) == LEFT  # the hidden left ear: a ring
    r, g, b = drawn[30, 50]
    assert r == g == b > 200  # the bone from one eye to the other: across, white


def test_the_row_reads_back_in_hugging_face_datasets_with_named_features(tmp_path):
    datasets = pytest.importorskip("datasets")
    kind = KeypointsKind(False, FACE)
    image = np.zeros((H, W, 3), np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    rows = [{"image": {"bytes": png, "path": None}, **kind.values(face(), image)},
            {"image": {"bytes": png, "path": None}, **kind.values(nobody(), image)}]
    spec = RowSpec((image_column(), *kind.columns(["face"], True)))
    pq.write_table(spec.table(rows), tmp_path / "train-00000.parquet")
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))["train"]
    objects = ds.features["objects"]
    points = objects.feature["keypoints"] if hasattr(objects, "feature") else objects["keypoints"]
    assert set(points.feature if hasattr(points, "feature") else points) == {"x", "y", "visibility"}
    first = ds[0]["objects"]["keypoints"][0]
    assert first["x"] == [50, 40, 60, 30, 0] and first["visibility"] == [2, 2, 2, 1, 0]
    assert ds[1]["objects"]["keypoints"] == []
    back = pq.read_table(tmp_path / "train-00000.parquet").to_pylist()[0]
    assert kind.arrays(back)["keypoints"].tolist() == face().points.tolist()


def test_torch_target_is_keypoint_rcnn_s_n_k_3_and_arrays_round_trip():
    torch = pytest.importorskip("torch")
    kind = KeypointsKind(False, FACE)
    image = np.zeros((H, W, 3), np.uint8)
    arrays = kind.arrays(kind.values(face(), image))
    target = kind.torch_target(arrays, "xyxy", "torchvision")
    assert target["keypoints"].shape == (1, 5, 3) and target["keypoints"].dtype == torch.float32
    assert target["boxes"].tolist() == [[20, 10, 80, 80]] and target["labels"].tolist() == [1]
    again = kind.to_arrays(kind.from_arrays(arrays, image.shape), image.shape)
    assert again["keypoints"].tolist() == arrays["keypoints"].tolist()


def test_a_user_s_torch_target_keeps_its_keypoints_through_a_flip():
    torch = pytest.importorskip("torch")
    kind = KeypointsKind(False, FACE)
    user = {"boxes": torch.tensor([[20.0, 10, 80, 80]]), "labels": torch.tensor([0]),
            "keypoints": torch.tensor(face().points, dtype=torch.float32)}
    arrays, restore = kind.from_user_target(user, (H, W, 3), "xyxy", "augpipe")
    state = kind.from_arrays(arrays, (H, W, 3))
    image, out, _ = apply_recipe(np.zeros((H, W, 3), np.uint8), parse_recipe(FLIP), 1, kind, state)
    back = restore(kind.to_arrays(out, image.shape))
    assert isinstance(back["keypoints"], torch.Tensor) and back["keypoints"].shape == (1, 5, 3)
    assert back["keypoints"][0, LEFT_EYE, 0] == pytest.approx(W - 1 - 60)


def test_augpipe_check_takes_task_keypoints(cli):
    result = cli("check", "flips", "--task", "keypoints")
    assert result.exit_code == 0 and "recipe 'flips' is valid" in result.output
    refused = cli("check", "classic", "--task", "keypoints")
    assert refused.exit_code == 2 and "Rotate: border_mode 4; Affine: border_mode 4: each mirrors keypoints into " \
        "the border" in refused.output  # every such step at once (a new user met them one by one)


# ---------------------------------------------------------------- audit (augpipe inspect)

def test_audit_finds_keypoints_outside_the_image_yet_labelled():
    from augpipe.formats.base import Objects, SourceFile

    kind = KeypointsKind(keypoint_names=FACE)
    inside_ = [50, 40, 2, 60, 40, 2, 40, 40, 1, 0, 0, 0, 0, 0, 0]
    outside = [130, 40, 2, 60, -5, 1, 40, 40, 2, 500, 500, 0, 0, 0, 0]  # nose right of it, left eye above
    objects = Objects(((30, 30, 40, 40), (30, 30, 40, 30)), (0, 0), (3, 4), fields={"keypoints": (inside_, outside)})
    found = kind.audit(SourceFile("a.jpg", None, None, 1, 0, objects), None, (W, H), ["person"])
    assert [(c, w) for c, w, _ in found.problems] == [("keypoint_outside", "object 1 (id 4) keypoint 0 (nose)"),
                                                      ("keypoint_outside", "object 1 (id 4) keypoint 1 (left_eye)")]
    assert "marked visible (2)" in found.problems[0][2] and "marked labelled (1)" in found.problems[1][2]
    assert found.facts["keypoints"] == {"visible": 4, "hidden": 2, "unlabelled": 4}
    clean = Objects(((30, 30, 40, 40),), (0,), (0,), fields={"keypoints": (inside_,)})
    assert kind.audit(SourceFile("a.jpg", None, None, 1, 0, clean), None, (W, H), ["person"]).problems == []


def test_audit_of_yolo_keypoints_in_fractions_and_of_a_row():
    from augpipe.formats.base import Objects, SourceFile

    kind = KeypointsKind(keypoint_names=FACE[:2])
    objects = Objects(((0.5, 0.5, 0.2, 0.2),), (0,), (0,), box_format="cxcywhn",
                      fields={"keypoints": ((0.5, 0.5, 2, 1.2, 0.5, 2),)})
    found = kind.audit(SourceFile("a.jpg", None, None, 1, 0, objects), None, (W, H), ["person"])
    assert [(c, w) for c, w, _ in found.problems] == [("keypoint_outside", "object 0 keypoint 1 (left_eye)")]
    assert "at (144, 50)" in found.problems[0][2]
    row = {"width": W, "height": H, "objects": {"bbox": [[10, 10, 20, 20]], "category": [0], "id": [0],
                                                "keypoints": [{"x": [15, 121], "y": [15, 15], "visibility": [2, 2]}]}}
    assert [c for c, _, _ in kind.audit_row(row, ["person"]).problems] == ["keypoint_outside"]
