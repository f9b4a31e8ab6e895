import pytest
import yaml

from augpipe.catalog import transform_entries
from augpipe.dryrun import check_recipe
from augpipe.errors import RecipeError
from augpipe.recipe import check_for_kind, parse_recipe
from augpipe.studio.yamltext import edit, error_line
from augpipe.targets import check_choices


def refusal(text: str) -> str:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "r.yaml")
    return str(caught.value)


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the (first) line holding `marker`."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


BLOCK = """\
name: demo
copies: 2
transforms:
  - HorizontalFlip
  - OneOf:
      p: 0.5
      transforms:
        - VerticalFlip
        - Rotate:
            p: 0.5
            limit: ten   # the bad one
  - Blur: {blur_limit: 3}
"""


@pytest.mark.parametrize("text, marker", [
    ("transforms:\n  - Rotate: {limit: 10\n  - HorizontalFlip\n", None),  # a YAML error: its own line
    ("copies: 2\ntranforms: [HorizontalFlip]\n", "tranforms"),
    ("name: x\ncopies: -1\ntransforms: [HorizontalFlip]\n", "copies"),
    ("transforms: [HorizontalFlip]\noutput:\n  format: png\n  quality: 300\n", "quality"),
    ("transforms: [HorizontalFlip]\noutput:\n  resize: {height: 0, width: 3}\n", "resize"),
    ("transforms: [HorizontalFlip]\noutput:\n  format: png\n  wobble: 1\n", "wobble"),
    ("name: x\ntransforms: []\n", "transforms"),
    (BLOCK, "limit: ten"),
    ("transforms:\n  - HorizontalFlip\n  - VerticalFlip\n  - Rotate: {limit: ten}\n", "Rotate"),
    ("transforms:\n  - HorizontalFlip\n  - Rotate:\n      p: 0.5\n      limt: 3\n", "limt"),
    ("transforms:\n  - HorizontalFlip\n  - RandomResizedCrop: {scale: [0.5, 1.0]}\n", "RandomResizedCrop"),
    ("transforms:\n  - HorizontalFlip\n  - Blur:\n      p: 1\n      blur_limit: 1001\n", "blur_limit"),
    ("transforms:\n  - HorizontalFlip\n  - Mosaic:\n      p: 3\n", "p: 3"),
    ("transforms:\n  - HorizontalFlip\n  - Blurr\n", "Blurr"),
])
def test_the_line_of_each_refusal(text, marker):
    message = refusal(text)
    found = error_line(text, message)
    if marker is None:
        assert "not valid YAML at line" in message and found == int(message.split("at line ")[1].split(":")[0])
    else:
        assert found == line_of(text, marker), message


def test_nested_labels_and_albumentations_own_form():
    text = ("transform:\n  __class_fullname__: Compose\n  transforms:\n"
            "    - __class_fullname__: HorizontalFlip\n      p: 0.5\n"
            "    - __class_fullname__: albumentations.augmentations.geometric.rotate.Rotate\n"
            "      p: 0.5\n      limit: ten\n")
    message = refusal(text)
    assert "transform 2 Rotate" in message
    assert error_line(text, message) == line_of(text, "limit: ten")


def test_the_line_of_a_refusal_for_the_dataset_kind():
    text = "transforms:\n  - HorizontalFlip\n  - BBoxSafeRandomCrop: {}\n"
    with pytest.raises(RecipeError) as caught:
        check_for_kind(parse_recipe(text, "r.yaml"), check_choices()["classification"])
    assert error_line(text, str(caught.value)) == 3


def test_the_line_of_what_the_dry_run_finds():
    text = "copies: 1\ntransforms:\n  - HorizontalFlip\n  - RandomCrop: {height: 2000, width: 2000, p: 1}\n"
    with pytest.raises(RecipeError) as caught:
        check_recipe(parse_recipe(text, "r.yaml"))
    assert "transform 2 RandomCrop" in str(caught.value)
    assert error_line(text, str(caught.value)) == 4
    found = check_recipe(parse_recipe(text, "r.yaml"), sizes=[(3000, 3000), (100, 100)])
    assert found.warnings and "transform 2 RandomCrop" in found.warnings[0]
    assert error_line(text, found.warnings[0]) == 4


def test_the_line_of_warnings():
    text = "transforms:\n  - HorizontalFlip\n  - Affine:\n      p: 0.5\n      rotate: 45\n      border_mode: 2\n"
    recipe = parse_recipe(text, "r.yaml")
    (fixed,) = recipe.warnings
    assert error_line(text, fixed) == line_of(text, "rotate: 45")
    mirror = [w for w in check_for_kind(recipe, check_choices()["detection"]) if "mirrors" in w]
    assert mirror and error_line(text, mirror[0]) == line_of(text, "border_mode")
    keypoints = "transforms: [HorizontalFlip]\nkeypoint_flip: {left_eye: right_eye}\n"
    unused = check_for_kind(parse_recipe(keypoints, "r.yaml"), check_choices()["classification"])
    assert unused and error_line(keypoints, unused[0]) == 2


@pytest.mark.parametrize("text, message", [
    ("", "transform 1 Rotate: field 'limit': bad"),
    ("[1, 2", "something"),
    ("- a\n- b\n", "transform 1 a: bad"),
    ("transforms: [HorizontalFlip]\n", "transform 7 Rotate: field 'limit': bad"),
    ("transforms: [HorizontalFlip]\n", "transform 1.1 HorizontalFlip: bad"),
    ("transforms: [HorizontalFlip]\n", "images of 10×10 will be skipped"),
])
def test_no_line_when_it_cannot_tell(text, message):
    assert error_line(text, message) is None


# ---------------------------------------------------------------- edits

RECIPE = """\
# a recipe for the studio
name: demo   # its name
copies: 2
transforms:
  # flips first
  - HorizontalFlip          # cheap
  - Rotate: {limit: [-10, 10], p: 0.5}   # tilt
  - Blur:
      blur_limit: 3   # small
      p: 0.2
  - OneOf:
      transforms: [ToGray, {ChannelShuffle: {p: 1}}]
# the end
"""
COMMENTS = ["# a recipe for the studio", "# its name", "# flips first", "# tilt", "# the end"]


def specs(text: str) -> list[dict]:
    return [dict(s) for s in parse_recipe(text, "r.yaml").transforms]


def unchanged_lines(before: str, after: str) -> set[str]:
    return set(before.splitlines()) - set(after.splitlines())


def test_set_keeps_the_rest_of_the_text():
    out = edit(RECIPE, "set", [1], param="limit", value="[-15, 15]")
    assert specs(out)[1] == {"__class_fullname__": "Rotate", "limit": [-15, 15], "p": 0.5}
    assert "  - Rotate: {limit: [-15, 15], p: 0.5}   # tilt" in out
    assert unchanged_lines(RECIPE, out) == {"  - Rotate: {limit: [-10, 10], p: 0.5}   # tilt"}
    out = edit(RECIPE, "set", [2], param="p", value="0.75")
    assert "      p: 0.75" in out and "      blur_limit: 3   # small" in out  # block params stay block
    assert specs(out)[2]["p"] == 0.75


def test_set_on_a_bare_name_and_in_a_compose():
    out = edit(RECIPE, "set", [0], param="p", value="0.3")
    assert specs(out)[0] == {"__class_fullname__": "HorizontalFlip", "p": 0.3}
    assert line_of(out, "HorizontalFlip: {p: 0.3}") == line_of(out, "# cheap")
    out = edit(RECIPE, "set", [3, 0], param="p", value="1")
    assert specs(out)[3]["transforms"][0] == {"__class_fullname__": "ToGray", "p": 1}
    for comment in COMMENTS:
        assert comment in out


def test_unset_remove_and_move():
    out = edit(RECIPE, "unset", [2], param="blur_limit")
    assert specs(out)[2] == {"__class_fullname__": "Blur", "p": 0.2}
    assert edit(RECIPE, "unset", [2], param="absent") == RECIPE
    assert edit(RECIPE, "unset", [0], param="p") == RECIPE  # a bare name stays bare
    out = edit(RECIPE, "remove", [1])
    assert [s["__class_fullname__"] for s in specs(out)] == ["HorizontalFlip", "Blur", "OneOf"]
    assert "# tilt" not in out and all(c in out for c in COMMENTS if c != "# tilt")
    out = edit(RECIPE, "move", [1], by=-1)
    assert [s["__class_fullname__"] for s in specs(out)] == ["Rotate", "HorizontalFlip", "Blur", "OneOf"]
    assert line_of(out, "# tilt") == line_of(out, "Rotate") and line_of(out, "# cheap") == line_of(out, "HorizontalFlip")
    assert edit(edit(RECIPE, "move", [2], by=1), "move", [3], by=-1) == RECIPE
    out = edit(RECIPE, "move", [3, 1], by=-1)
    assert [s["__class_fullname__"] for s in specs(out)[3]["transforms"]] == ["ChannelShuffle", "ToGray"]


def test_add_appends_in_flow_style():
    out = edit(RECIPE, "add", name="Sharpen")
    assert out.splitlines()[-2:] == ["  - Sharpen: {p: 0.5}", "# the end"]
    assert specs(out)[-1] == {"__class_fullname__": "Sharpen", "p": 0.5}
    out = edit(RECIPE, "add", [3], name="Sharpen")
    assert specs(out)[3]["transforms"][-1] == {"__class_fullname__": "Sharpen", "p": 0.5}
    out = edit("name: x   # mine\n", "add", name="HorizontalFlip")
    assert out == "name: x   # mine\ntransforms:\n  - HorizontalFlip: {p: 0.5}\n"
    assert specs(edit("", "add", name="Mosaic")) == [{"__class_fullname__": "Mosaic", "p": 0.5}]
    assert edit("# new\n", "add", name="Blur") == "# new\ntransforms:\n  - Blur: {p: 0.5}\n"


def test_what_add_gives_required_parameters_makes_a_valid_recipe():
    needing = [t["name"] for g in transform_entries()["groups"] for t in g["transforms"]
               if any(p["required"] for p in t["params"])]
    assert {"RandomCrop", "RandomResizedCrop", "OneOf"} <= set(needing)
    for name in needing:
        out = edit("transforms: [HorizontalFlip]\n", "add", name=name)
        assert specs(out)[-1]["__class_fullname__"] == name
    crop = edit("copies: 1\ntransforms: [HorizontalFlip]\n", "add", name="RandomCrop")
    assert check_recipe(parse_recipe(crop, "r.yaml")).warnings == ()  # the test image's side fits


@pytest.mark.parametrize("text", [
    "transforms:\n- HorizontalFlip\n- Blur:\n    p: 1   # one\n",
    "transforms:\n    - HorizontalFlip\n    - Blur:\n        p: 1   # one\n",
    "transforms:\n    - HorizontalFlip\n    - Blur:\n          p: 1   # one\n",
    "transforms: [HorizontalFlip, {Blur: {p: 1}}]   # one\n",
])
def test_the_text_keeps_its_own_indentation(text):
    out = edit(text, "set", [0], param="p", value="0.5")
    assert unchanged_lines(text, out) == {line for line in text.splitlines() if "HorizontalFlip" in line}
    assert specs(out)[1] == {"__class_fullname__": "Blur", "p": 1}


def test_albumentations_own_form_is_edited_in_place():
    text = ("transform:\n  __class_fullname__: Compose\n  transforms:\n"
            "    - __class_fullname__: HorizontalFlip\n      p: 0.5\n")
    out = edit(edit(text, "set", [0], param="p", value="1"), "add", name="Blur")
    assert specs(out) == [{"__class_fullname__": "HorizontalFlip", "p": 1}, {"__class_fullname__": "Blur", "p": 0.5}]


@pytest.mark.parametrize("text, args, words", [
    (RECIPE, dict(op="set", path=[9], param="p", value="1"), "no transform 10"),
    (RECIPE, dict(op="set", path=[1, 0], param="p", value="1"), "transform 2 is not a compose"),
    (RECIPE, dict(op="add", path=[0], name="Blur"), "transform 1 is not a compose"),
    (RECIPE, dict(op="set", path=[1], param="limit", value="[1, 2"), "is not YAML"),
    (RECIPE, dict(op="set", path=[1], param="limit", value="!!python/object/apply:os.system ['true']"), "not YAML"),
    (RECIPE, dict(op="set", path=[1], param="limit"), "needs a value"),
    (RECIPE, dict(op="set", path=[], param="p", value="1"), "needs the path"),
    (RECIPE, dict(op="move", path=[0], by=-1), "first in its list already"),
    (RECIPE, dict(op="move", path=[3], by=1), "last in its list already"),
    (RECIPE, dict(op="add", name="Lambda"), "not 'Lambda'"),
    (RECIPE, dict(op="rename", path=[0]), "op is one of"),
    (RECIPE, dict(op="remove", path=["1"]), "a path is a list of 0-based indexes"),
    (RECIPE, dict(op="remove", path=1), "a path is a list of 0-based indexes"),
    (RECIPE, dict(op="remove", path=None), "remove needs the path of a transform"),
    (RECIPE, dict(op="move", path=[1], by="1"), "move goes by -1 or 1"),
    (RECIPE, dict(op="set", path=[1], value="1"), "set needs the name of a parameter"),
    ("- HorizontalFlip\n", dict(op="add", name="Blur"), "a recipe is a YAML mapping"),
    ("transforms: [HorizontalFlip\n", dict(op="add", name="Blur"), "not valid YAML at line 2"),
    ("transforms:\n  - {A: {}, B: {}}\n", dict(op="set", path=[0], param="p", value="1"), "cannot be edited here"),
    ("transforms: [{Rotate: [1]}]\n", dict(op="set", path=[0], param="p", value="1"), "must be a mapping"),
])
def test_edit_refusals_are_one_line(text, args, words):
    with pytest.raises(RecipeError) as caught:
        edit(text, **args)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_set_values_are_read_safely():
    out = edit(RECIPE, "set", [1], param="limit", value="[-5, 5]  # a comment in the value")
    assert yaml.safe_load(out)["transforms"][1] == {"Rotate": {"limit": [-5, 5], "p": 0.5}}
