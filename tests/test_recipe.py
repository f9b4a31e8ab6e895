"""Recipes: bundled ones load, bad ones fail with one line naming file, transform and field."""

from __future__ import annotations

import re

import albumentations as A
import pyarrow.parquet as pq
import pytest

from augpipe import ExpandOptions, expand
from augpipe.errors import RecipeError
from augpipe.recipe import bundled_recipes, describe, load_recipe, parse_recipe, resolve_recipe_path

BUNDLED = ["flips", "rotations", "translate", "colour", "grayscale", "crops", "classic", "digits", "detection"]


def test_every_bundled_recipe_loads_with_a_description_and_no_warning():
    names = [p.stem for p in bundled_recipes()]
    assert sorted(names) == sorted(BUNDLED)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.description, name
        assert recipe.warnings == (), name


def test_every_bundled_recipe_passes_the_dry_run_without_warning():
    from augpipe.dryrun import check_recipe

    for path in bundled_recipes():
        assert check_recipe(load_recipe(path)).warnings == (), path.stem


def test_digits_recipe_never_flips():
    text = load_recipe("digits").text
    assert "Flip" not in text and "Transpose" not in text


@pytest.mark.parametrize("ref", ["flips", "flips.yaml", "recipes/flips.yaml"])
def test_bundled_recipe_found_by_name_from_any_folder(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe_path(ref).name == "flips.yaml"


def test_missing_recipe_lists_the_bundled_ones():
    with pytest.raises(RecipeError, match="nosuch.*classic"):
        load_recipe("nosuch")


def bad(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ") and "\n" not in message
    return message


def test_unknown_transform_suggests_the_closest_names():
    msg = bad("transforms: [HorizontalFlip, {VerticalFlp: {p: 0.5}}]")
    assert "transform 2 VerticalFlp: unknown transform" in msg and "'VerticalFlip'" in msg


def test_unknown_parameter_is_an_error_not_a_warning():
    msg = bad("transforms: [{Rotate: {limt: 10, p: 0.5}}]")
    assert "transform 1 Rotate: field 'limt'" in msg and "'limit'" in msg
    # albumentations 1's name for a parameter that 2 shortened: the short one first
    assert "(did you mean 'fill', 'fill_mask'?)" in bad("transforms: [{Rotate: {fill_value: 0}}]")
    # close to none (a new user's, albumentations 1's var_limit): the parameters it takes
    assert bad("transforms: [{GaussNoise: {var_limit: [10, 50]}}]").endswith(
        "transform 1 GaussNoise: field 'var_limit' is not a parameter of GaussNoise (it takes std_range, "
        "mean_range, per_channel, noise_scale_factor, p: augpipe transforms GaussNoise)")
    assert "is not a parameter of Mosaic (it takes p, grid_yx, " in bad("transforms: [{Mosaic: {zzz: 1}}]")


def test_wrong_type_names_the_field():
    msg = bad("transforms: [{Rotate: {limit: ten, p: 0.5}}]")
    assert "transform 1 Rotate: field 'limit'" in msg and "valid number" in msg
    assert "or 4 (OpenCV's border modes: 0 constant (fill), 1 replicate, 2 reflect, 3 wrap, 4 reflect_101)" in \
        bad("transforms: [{Rotate: {border_mode: 7}}]")


def test_probability_out_of_range():
    msg = bad("transforms: [{HorizontalFlip: {p: 1.5}}]")
    assert "transform 1 HorizontalFlip: field 'p'" in msg and "less than or equal to 1" in msg


def test_missing_required_parameter():
    msg = bad("transforms: [{RandomResizedCrop: {scale: [0.5, 1.0]}}]")
    assert "RandomResizedCrop: field 'size': required parameter is missing" in msg


def test_unknown_top_level_key():
    msg = bad("copise: 3\ntransforms: [HorizontalFlip]")
    assert "unknown top-level key 'copise'" in msg and "'copies'" in msg


def test_bad_output_field():
    assert "field 'output.quality'" in bad("output: {quality: 300}\ntransforms: [HorizontalFlip]")
    assert "field 'output.format'" in bad("output: {format: gif}\ntransforms: [HorizontalFlip]")


def test_lambda_is_refused():
    assert "Lambda runs arbitrary Python code" in bad("transforms: [{Lambda: {}}]")


def test_yaml_python_tags_are_refused():
    msg = bad("transforms: !!python/object/apply:os.system ['echo hi']")
    assert "not valid YAML" in msg


def test_subclass_defined_outside_albumentations_is_not_built():
    class SneakyFlip(A.HorizontalFlip):  # registered by albumentations' metaclass
        pass

    assert "SneakyFlip: unknown transform" in bad("transforms: [SneakyFlip]")


def test_error_inside_oneof_names_the_nested_position():
    msg = bad("transforms: [HorizontalFlip, {OneOf: {transforms: [VerticalFlip, {Rotate: {limit: x}}]}}]")
    assert "transform 2.2 Rotate: field 'limit'" in msg


def test_compose_options_work():
    recipe = parse_recipe(
        """
transforms:
  - OneOf: {p: 1.0, transforms: [HorizontalFlip, VerticalFlip]}
  - SomeOf: {n: 1, transforms: [{Rotate: {limit: [-5, 5]}}, ToGray]}
  - Sequential: {transforms: [{Blur: {blur_limit: [3, 5]}}]}
""",
        "c.yaml",
    )
    lines = describe(recipe)
    assert lines[0].startswith("1. OneOf(") and any("2.1. Rotate" in line for line in lines)


def test_missing_p_takes_the_default_quietly_and_check_shows_it():
    recipe = parse_recipe("transforms: [{Rotate: {limit: [-5, 5]}}]", "r.yaml")
    assert recipe.warnings == ()
    assert any("p not given, default p=0.5" in n for n in recipe.notes)
    assert "p=0.5 (default)" in describe(recipe)[0]


def test_check_shows_the_defaults_that_act_where_a_parameter_is_not_given():
    """A new user's ColorJitter of brightness and contrast recoloured yellow stars blue: its hue
    defaults to the whole colour wheel, and check showed only what was given."""
    recipe = parse_recipe("transforms: [{ColorJitter: {brightness: [0.8, 1.2], contrast: [0.8, 1.2]}}, "
                          "{Rotate: {limit: 5}}, {OneOf: {transforms: [HorizontalFlip]}}]", "r.yaml")
    lines = describe(recipe)
    assert lines[1] == "   defaults: saturation=(0.8, 1.2), hue=(-0.5, 0.5)"
    rotate = lines[lines.index(next(line for line in lines if line.startswith("2. Rotate"))) + 1]
    assert "interpolation=1" in rotate and "rotate_method" not in rotate  # the recipe's own, for boxes
    assert not any("defaults" in line for line in lines if line.startswith(("3.", "  3.1.")))


def test_single_value_range_warns():
    recipe = parse_recipe("transforms: [{Affine: {translate_percent: 0.1, p: 0.5}}]", "r.yaml")
    assert any("translate_percent=0.1 is a fixed value" in w for w in recipe.warnings)
    ok = parse_recipe("transforms: [{Affine: {translate_percent: [-0.1, 0.1], p: 0.5}}]", "r.yaml")
    assert ok.warnings == ()


def test_file_written_by_albumentations_save_is_accepted(tmp_path):
    compose = A.Compose([A.HorizontalFlip(p=0.5), A.Rotate(limit=10, p=0.3)])
    path = tmp_path / "saved.yaml"
    A.save(compose, str(path), data_format="yaml")
    recipe = load_recipe(path)
    assert recipe.name == "saved"
    assert [t["__class_fullname__"] for t in recipe.transforms] == ["HorizontalFlip", "Rotate"]


def test_loading_albumentations_does_not_load_torch():
    """albumentations imports torch when it is installed: 1 s and 0.5 GB in every worker."""
    import subprocess
    import sys

    code = ("import sys; from augpipe.recipe import load_recipe; load_recipe('classic'); "
            "import augpipe._preload; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- inputs augpipe does not give

@pytest.mark.parametrize("item, needs", [
    ("FDA", "'fda_metadata'"),
    ("HistogramMatching", "'hm_metadata'"),
    ("PixelDistributionAdaptation", "'pda_metadata'"),
    ("{Equalize: {mask_params: [roi]}}", "'roi'"),
])
def test_transforms_needing_inputs_augpipe_lacks_are_refused(item, needs):
    msg = bad(f"transforms: [HorizontalFlip, {{OneOf: {{transforms: [VerticalFlip, {item}]}}}}]")
    assert "transform 2.2 " in msg and f"needs {needs}, which augpipe does not give" in msg


@pytest.mark.parametrize("item, needs, task", [
    ("MaskDropout", "'mask'", "classification"),
    ("{CropNonEmptyMaskIfExists: {height: 10, width: 10}}", "'mask'", "detection"),
    ("BBoxSafeRandomCrop", "'bboxes'", "classification"),
    ("{RandomSizedBBoxSafeCrop: {height: 10, width: 10}}", "'bboxes'", "segmentation"),
])
def test_transforms_needing_a_target_the_dataset_lacks_are_refused_for_it(item, needs, task):
    from augpipe.recipe import check_for_kind
    from augpipe.targets import kind_for

    recipe = parse_recipe(f"transforms: [HorizontalFlip, {{OneOf: {{transforms: [VerticalFlip, {item}]}}}}]")
    with pytest.raises(RecipeError) as info:
        check_for_kind(recipe, kind_for(task))
    assert "transform 2.2 " in str(info.value) and f"needs {needs}, which a {task} dataset does not have" in str(info.value)


def test_every_geometric_transform_a_recipe_may_use_moves_boxes_and_masks():
    """albumentations 2.0.8: the one that does not (OverlayElements) needs overlay metadata and
    is refused anyway, so `check_for_kind`'s "cannot move boxes" has nothing to refuse today."""
    from augpipe.recipe import check_for_kind
    from augpipe.targets import kind_for

    assert _dual_transforms_without("BBOXES") == [] and _dual_transforms_without("MASK") == []
    assert "needs 'overlay_metadata'" in bad("transforms: [OverlayElements]")
    recipe = parse_recipe("transforms: [HorizontalFlip, {GridDistortion: {p: 0.5}}]")
    check_for_kind(recipe, kind_for("detection", instance_masks=True))


def _dual_transforms_without(target: str) -> list[str]:
    from albumentations.core.transforms_interface import DualTransform
    from albumentations.core.type_definitions import Targets

    from augpipe.recipe import allowed_transforms, refusal

    out = []
    for name, cls in sorted(allowed_transforms().items()):
        targets = getattr(cls, "_targets", ())
        targets = targets if isinstance(targets, tuple) else (targets,)
        if issubclass(cls, DualTransform) and getattr(Targets, target) not in targets and refusal(name) is None:
            try:
                parse_recipe(f"transforms: [{name}]")
            except RecipeError:
                continue
            out.append(name)
    return out


def test_required_targets_are_albumentations_declarations(monkeypatch):
    from augpipe import limits

    assert limits.required_targets(A.HorizontalFlip) == {"image"}
    assert limits.required_targets(A.Mosaic) == {"image", "mosaic_metadata"}
    assert limits.required_targets(A.Mosaic, {"metadata_key": "tiles"}) == {"image", "tiles"}
    assert limits.required_targets(A.MaskDropout) == {"image", "mask"}
    # what a dataset gives decides: MaskDropout for a segmentation dataset, not for classification
    assert limits.missing_targets(A.MaskDropout, provided=frozenset({"image", "mask"})) == set()
    assert limits.missing_targets(A.MaskDropout, provided=frozenset({"image"})) == {"mask"}
    assert limits.missing_targets(A.Mosaic) == {"mosaic_metadata"}


def test_transforms_listing_hides_what_a_recipe_cannot_use():
    from augpipe.catalog import catalog

    names = {name for items in catalog().values() for name, _ in items}
    assert {"HorizontalFlip", "RandomCrop", "OneOf", "GridElasticDeform"} <= names
    hidden = {"FDA", "HistogramMatching", "PixelDistributionAdaptation", "RandomCropNearBBox",
              "OverlayElements", "TextImage", "CubicSymmetry", "Normalize", "ToFloat"}
    assert not hidden & names
    assert {"MaskDropout", "BBoxSafeRandomCrop"} <= names  # for detection and segmentation datasets
    # albumentations' Mosaic is fed its donors by augpipe, with the other steps that take other images
    assert [name for name, _ in catalog()["other images"]] == ["CopyPaste", "MixUp", "Mosaic"]


# ---------------------------------------------------------------- the dry run

def checked(text: str, sizes=None):
    from augpipe.dryrun import check_recipe

    return check_recipe(parse_recipe(text, "my.yaml"), sizes)


def check_fails(text: str, sizes=None) -> str:
    with pytest.raises(RecipeError) as info:
        checked(text, sizes)
    message = str(info.value)
    assert message.startswith("my.yaml: ") and "\n" not in message
    return message


def test_dry_run_fires_every_transform_even_rare_nested_ones():
    msg = check_fails("transforms: [{OneOf: {p: 0.01, transforms: [HorizontalFlip, "
                      "{CenterCrop: {height: 300, width: 300, p: 0.01}}]}}]")
    assert "transform 1.2 CenterCrop: fails on a 256×256 image: CropSizeError" in msg


def test_fixed_size_crops_pass_at_the_default_size():
    resize = "output: {resize: {height: 224, width: 224}}\n"
    assert checked(resize + "transforms: [{RandomCrop: {height: 224, width: 224}}]").warnings == ()
    assert checked(resize + "transforms: [{CenterCrop: {height: 200, width: 200}}]").warnings == ()


def test_check_command_passes_fixed_size_crops(cli, tmp_path):
    for crop, exit_code in [("RandomCrop: {height: 224, width: 224}", 1), ("CenterCrop: {height: 200, width: 200}", 1)]:
        path = tmp_path / "crop.yaml"
        path.write_text(f"transforms: [{{{crop}}}]\n")
        result = cli("check", path)
        assert result.exit_code == exit_code and "is valid" in result.output  # warned, not refused
        assert "add output: {resize: {height:" in result.output
        path.write_text(f"output: {{resize: {{height: 64, width: 64}}}}\ntransforms: [{{{crop}}}]\n")
        assert cli("check", path).exit_code == 0


def test_sized_check_reports_the_smallest_size_a_crop_needs():
    result = checked("output: {resize: {height: 224, width: 224}}\ntransforms: [{RandomCrop: {height: 224, width: 224}}]",
                     [(640, 480), (100, 80), (300, 300)])
    assert result.min_size == (224, 224)
    assert result.warnings == ("images smaller than 224×224 will be skipped: transform 1 RandomCrop needs 224×224",)


def test_sized_check_fails_when_every_size_fails():
    msg = check_fails("transforms: [{RandomCrop: {height: 224, width: 224}}]", [(100, 80), (120, 100)])
    assert "transform 1 RandomCrop: fails on a 120×100 image" in msg


def test_copies_and_originals_of_different_sizes_warn():
    crop = "transforms: [{RandomCrop: {height: 224, width: 224}}]"
    (warning,) = checked(crop).warnings
    assert "originals keep their size but copies of the 256×256 test image come out at 224×224" in warning
    assert "add output: {resize: {height: 256, width: 256}} (the 256×256 test image's" in warning  # not the crop's
    # without the user's images (`augpipe check`), the size that gives one size only is said (a new
    # user's 128×96 images, cropped to 128×96, were told to stretch them to 256×256)
    assert warning.endswith("; images of 224×224 give one size only (expand checks your own images' sizes, and "
                            "warns only where they differ)")
    (sized,) = checked(crop, [(300, 300)]).warnings
    assert "copies of a 300×300 image come out at" in sized and "give one size only" not in sized
    (warning,) = checked("keep_original: false\ntransforms: [{RandomCrop: {height: 224, width: 224, p: 0.5}}]").warnings
    assert "come out at different sizes (224×224 or 256×256)" in warning
    assert checked("keep_original: false\ntransforms: [{RandomCrop: {height: 224, width: 224, p: 1}}]").warnings == ()


def test_images_of_different_sizes_warn_without_output_resize():
    (warning,) = checked("transforms: [HorizontalFlip]", [(32, 32), (64, 48)]).warnings
    assert "the images differ in size" in warning and "add output: {resize:" in warning
    assert checked("transforms: [HorizontalFlip]", [(32, 32), (32, 32)]).warnings == ()
    resized = "keep_original: false\ntransforms: [{Resize: {height: 40, width: 40, p: 1}}]"
    assert checked(resized, [(32, 32), (64, 48)]).warnings == ()


def test_too_slow_transform_is_refused_by_name(monkeypatch):
    from augpipe import dryrun

    monkeypatch.setattr(dryrun, "LEAF_SECONDS", 0.0)
    msg = check_fails("transforms: [HorizontalFlip, {OneOf: {transforms: [VerticalFlip, ToGray]}}]")
    assert "transform 1 HorizontalFlip: too slow" in msg and "256×256 test image (at most 0 s)" in msg


def test_a_copy_too_slow_in_all_is_refused(monkeypatch):
    from augpipe import dryrun

    monkeypatch.setattr(dryrun, "COPY_SECONDS", 0.0)
    assert "too slow: one copy can take up to" in check_fails("transforms: [HorizontalFlip]")


def test_worst_cost_applies_each_transform_as_often_as_the_recipe_allows():
    from augpipe.limits import worst_cost

    seconds = {"HorizontalFlip": 0.5, "VerticalFlip": 0.2, "ToGray": 0.1, "Blur": 0.3}
    transforms = [A.SomeOf([A.HorizontalFlip(), A.VerticalFlip()], n=30, replace=True),
                  A.OneOf([A.ToGray(), A.Blur()]), A.SomeOf([A.HorizontalFlip(), A.VerticalFlip(), A.Blur()], n=2)]
    assert worst_cost(transforms, lambda t: seconds[type(t).__name__]) == pytest.approx(30 * 0.5 + 0.3 + 0.8)


# ---------------------------------------------------------------- degenerate numbers

@pytest.mark.parametrize("params, needle", [
    ("{limit: [-.inf, .inf], p: 1}", "field 'limit': -inf is not a finite number"),
    ("{limit: [-1e308, 1e308], p: 1}", "field 'limit': -1e+308 is out of range"),
    ("{limit: ['-inf', 'inf'], p: 1}", "field 'limit': -inf is not a finite number"),
    ("{limit: [-10, 10], fill: [0, .nan, 0]}", "field 'fill': nan is not a finite number"),
    ("{limit: 10, p: 1000000000000}", "field 'p': 1e+12 is out of range"),
])
def test_non_finite_and_absurd_numbers_are_refused(params, needle):
    assert needle in bad(f"transforms: [{{Rotate: {params}}}]")


def test_non_finite_numbers_in_nested_mappings_are_refused():
    msg = bad("transforms: [{OneOf: {transforms: [{Affine: {scale: {x: [1, .inf], y: 1}}}]}}]")
    assert "transform 1.1 Affine: field 'scale': inf is not a finite number" in msg


# ---------------------------------------------------------------- cost bombs

@pytest.mark.parametrize("item, needle", [
    ("{GridElasticDeform: {num_grid_xy: [2000, 2000], magnitude: 10}}", "field 'num_grid_xy': 2000 is more than 16"),
    ("{ThinPlateSpline: {num_control_points: 50}}", "field 'num_control_points': 50 is more than 8"),
    ("{Resize: {height: 100000, width: 100}}", "field 'height': 100000 is more than 8192"),
    ("{Blur: {blur_limit: [3, 1001]}}", "field 'blur_limit': 1001 is more than 255"),
    ("{ElasticTransform: {sigma: 500}}", "field 'sigma': 500 is more than 100"),
    ("{Superpixels: {max_size: 4096}}", "field 'max_size': 4096 is more than 256"),
    ("{ToGray: {num_output_channels: 100000}}", "field 'num_output_channels': 100000 is more than 3"),
    ("{ZoomBlur: {step_factor: 0.01}}", "field 'step_factor': a step as small as 0 makes more than 100 zoom steps"),
    ("{RandomScale: {scale_limit: [-2, 0]}}", "field 'scale_limit'"),
])
def test_parameters_that_size_work_are_capped(item, needle):
    assert needle in bad(f"transforms: [HorizontalFlip, {item}]")


def test_what_the_transforms_add_up_to_is_bounded():
    scale = "{RandomScale: {scale_limit: [0, 3], p: 1}}"
    parse_recipe(f"transforms: [{scale}]", "ok.yaml")
    assert "transform 3 RandomScale: the transforms up to here can grow an image 16× a side" in bad(
        f"transforms: [{scale}, HorizontalFlip, {scale}]")
    assert "transform 2 Pad: the transforms up to here can add up to 32000 pixels" in bad(
        "transforms: [{Pad: {padding: 8000}}, {Pad: {padding: 8000}}]")
    assert "transform 1 SomeOf: the transforms up to here apply up to 100000 transforms" in bad(
        "transforms: [{SomeOf: {n: 100000, replace: true, transforms: [HorizontalFlip]}}]")


def _nested_oneofs(depth: int) -> str:
    item = "HorizontalFlip"
    for _ in range(depth):
        item = f"{{OneOf: {{transforms: [{item}]}}}}"
    return f"transforms: [{item}]"


def test_nesting_and_count_are_bounded():
    parse_recipe(_nested_oneofs(7), "ok.yaml")  # 8 levels
    assert "transform 1.1.1.1.1.1.1.1 OneOf: transforms nest more than 8 levels deep" in bad(_nested_oneofs(8))
    assert "transform 201 HorizontalFlip: more than 200 transforms" in bad(
        "transforms: [" + ", ".join(["HorizontalFlip"] * 201) + "]")
    assert "nest more than 8 levels deep" in bad("transforms: [&a {OneOf: {transforms: [*a]}}]")
    assert "nested more than 8 levels deep" in bad("transforms: [{Rotate: &p {limit: [1, *p]}}]")


def _alias_bomb() -> str:
    """8 levels of 9× OneOf of the level below, in about 3 KB: 43 million transforms."""
    lines = ["transforms:", "  - &t0 {HorizontalFlip: {p: 0.5}}"]
    for level in range(1, 9):
        lines.append(f"  - &t{level} {{OneOf: {{transforms: [{', '.join([f'*t{level - 1}'] * 9)}]}}}}")
    return "\n".join(lines) + "\n"


def test_recipe_bombs_fail_fast_in_one_line(tmp_path):
    """Each of these hung, took minutes and gigabytes, or overflowed the stack."""
    import subprocess
    import sys

    bombs = {
        "alias": _alias_bomb(),
        "grid": "transforms: [{GridElasticDeform: {num_grid_xy: [2000, 2000], magnitude: 10, p: 1}}]",
        "grid_huge": "transforms: [{GridElasticDeform: {num_grid_xy: [100000, 100000], magnitude: 10, p: 1}}]",
        "deep": _nested_oneofs(500),
    }
    for name, text in bombs.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    code = (
        "import sys\n"
        "from augpipe.dryrun import check_recipe\n"
        "from augpipe.errors import RecipeError\n"
        "from augpipe.recipe import load_recipe\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        check_recipe(load_recipe(path))\n"
        "        print('accepted')\n"
        "    except RecipeError as exc:\n"
        "        print(exc)\n"
    )
    paths = [str(tmp_path / f"{name}.yaml") for name in bombs]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=30,
                         check=True).stdout.splitlines()
    assert len(out) == len(bombs)
    alias, grid, grid_huge, deep = out
    assert "alias.yaml: transform" in alias and "more than 200 transforms" in alias
    assert "field 'num_grid_xy': 2000 is more than 16" in grid
    assert "field 'num_grid_xy': 100000 is more than 16" in grid_huge
    assert "deep.yaml: not valid YAML: nested too deeply" in deep


def test_recipe_text_size_is_bounded():
    assert "at most 1000000" in bad("transforms: [HorizontalFlip]\n" + "#" * 1_000_001)


def test_the_lean_box_filter_is_albumentations_filter_bit_for_bit():
    import numpy as np
    from albumentations.core.bbox_utils import filter_bboxes

    from augpipe.recipe import lean_filter

    rng = np.random.default_rng(0)
    dropped = kept = 0
    special = np.array([0.0, -0.0, 1.0, 1e-9, -1e-9, 1 - 1e-9, np.nan, np.inf, -np.inf])
    for k in range(3000):
        # a few boxes (the filter's Python arithmetic) and many (numpy's)
        n, columns = int(rng.integers(1, 8) if k % 4 else rng.integers(14, 30)), int(rng.integers(4, 7))
        boxes = rng.uniform(-0.5, 1.5, (n, columns)).astype(rng.choice([np.float32, np.float64]))
        boxes[:, 2] = boxes[:, 0] + rng.uniform(-0.1, 0.6, n)  # some of no or negative size, some outside
        boxes[:, 3] = boxes[:, 1] + rng.uniform(-0.1, 0.6, n)
        if k % 7 == 0:  # on the edges, signed zeros, not numbers
            boxes.flat[rng.integers(0, boxes.size, 3)] = rng.choice(special, 3)
        shape = {"height": int(rng.integers(1, 2000)), "width": int(rng.integers(1, 2000))}
        limits = [float(rng.choice(c)) for c in ([0, 0, 4, 100.5], [0, 0.3, 0.9, 1.0], [0, 1, 3.5], [0, 2])]
        with np.errstate(all="ignore"):
            theirs = filter_bboxes(boxes, shape, *limits)
            ours = lean_filter(boxes, shape, *limits)
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes() and ours.shape == theirs.shape
        dropped, kept = dropped + n - len(theirs), kept + len(theirs)
    assert dropped > 1000 and kept > 1000


def _box_steps():
    import albumentations as A
    import cv2

    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.2), A.RandomRotate90(p=0.2), A.ColorJitter(p=0.3),
            A.RandomCrop(40, 50, p=0.3), A.PadIfNeeded(70, 90, border_mode=0, p=0.3),
            A.Affine(translate_percent=(-0.3, 0.3), scale=(0.7, 1.3), rotate=(-30, 30), p=0.5),
            A.Rotate(limit=(-40, 40), rotate_method="ellipse", p=0.4), A.ShiftScaleRotate(p=0.3),
            A.Perspective(p=0.2), A.RandomResizedCrop((48, 64), p=0.2), A.Resize(50, 70, p=0.2),
            A.OneOf([A.CenterCrop(30, 30), A.Transpose()], p=0.3), A.RandomBrightnessContrast(p=0.3),
            A.SafeRotate(limit=(-20, 20), p=0.3), A.Affine(rotate=(-20, 20), rotate_method="ellipse", p=0.3),
            A.Affine(rotate=(-20, 20), border_mode=cv2.BORDER_REFLECT_101, p=0.2), A.Rotate(crop_border=True, p=0.2),
            A.ToGray(p=0.3)]


def _boxes_on_80_by_60(rng, n: int, largest: float):
    """n random COCO boxes of sides 0.5 to `largest`, inside an 80 × 60 image."""
    import numpy as np

    boxes = np.column_stack([rng.uniform(0, 70, n), rng.uniform(0, 50, n), rng.uniform(0.5, largest, n),
                             rng.uniform(0.5, largest, n)])
    boxes[:, 2] = np.minimum(boxes[:, 2], 80 - boxes[:, 0])
    boxes[:, 3] = np.minimum(boxes[:, 3], 60 - boxes[:, 1])
    return boxes


def _ours_and_theirs(steps, **thresholds):
    """Our Compose and albumentations' own of the same steps (`steps()` makes them), for COCO boxes
    with two label fields."""
    import albumentations as A

    from augpipe.recipe import compose_class

    params = A.BboxParams(format="coco", label_fields=["categories", "keys"], clip=True, **thresholds)
    return tuple(c(steps(), bbox_params=params, p=1.0, save_applied_params=True) for c in (compose_class(), A.Compose))


def _each_composed(composes, seed: int, **data) -> list[dict]:
    """Each Compose's result on the same data, each from the same random streams."""
    import random

    import numpy as np

    results = []
    for compose in composes:
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        results.append(compose(**{k: v.copy() if hasattr(v, "copy") else v for k, v in data.items()}))
    return results


@pytest.mark.parametrize("thresholds", [{}, {"min_visibility": 0.3, "min_area": 4}, {"min_width": 3, "min_height": 2},
                                        {"min_visibility": 0.99}], ids=["none", "visibility-area", "sides", "visible"])
def test_our_compose_gives_albumentations_own_boxes_bit_for_bit(thresholds):
    """Crops, pads, resizes, rotations, shifts, flips and pixel-only steps on boxes that leave the
    canvas and get dropped: the boxes, their labels, the image and the record of what fired are
    those of albumentations' own Compose, to the bit."""

    import numpy as np


    ours, theirs = _ours_and_theirs(_box_steps, **thresholds)
    assert type(ours.processors["bboxes"]).__name__ == "LeanBboxProcessor"
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    dropped = emptied = 0
    for seed in range(200):
        n = int(rng.integers(0, 8))
        boxes = _boxes_on_80_by_60(rng, n, 30)
        categories = rng.integers(0, 5, n).tolist()
        a, b = _each_composed((ours, theirs), seed, image=image, bboxes=boxes.reshape(-1, 4), categories=categories,
                              keys=list(range(n)))
        assert np.array_equal(a["image"], b["image"])
        assert a["bboxes"].dtype == b["bboxes"].dtype and a["bboxes"].tobytes() == b["bboxes"].tobytes()
        assert list(a["categories"]) == list(b["categories"]) and list(a["keys"]) == list(b["keys"])
        assert repr(a["applied_transforms"]) == repr(b["applied_transforms"])
        dropped += len(b["bboxes"]) < n
        emptied += n > 0 and len(b["bboxes"]) == 0
    assert dropped > 40 and emptied > 10  # the crops and shifts did drop boxes, some every box


def test_nested_steps_and_skipped_filters_give_albumentations_own_boxes_bit_for_bit():
    """Our Compose skips the filter for boxes it last gave back unchanged until a step with a box
    function runs: crops, pads and pixel steps inside Sequential and SomeOf (whose own checks run
    between their steps), steps that do not fire, on boxes the crops leave outside."""

    import albumentations as A
    import numpy as np


    def steps():
        return [A.RandomBrightnessContrast(p=0.5), A.RandomCrop(30, 40, p=0.5), A.ToGray(p=0.5),
                A.Sequential([A.ColorJitter(p=0.5), A.CenterCrop(24, 30, p=0.5), A.HorizontalFlip(p=0.5),
                              A.PadIfNeeded(40, 50, border_mode=0, p=0.5)], p=0.7),
                A.SomeOf([A.RandomCrop(20, 20, p=1.0), A.Blur(p=1.0), A.VerticalFlip(p=1.0)], n=2, p=0.7),
                A.RandomBrightnessContrast(p=0.5)]

    ours, theirs = _ours_and_theirs(steps)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    emptied = 0
    for seed in range(300):
        n = int(rng.integers(1, 8))
        boxes = _boxes_on_80_by_60(rng, n, 20)
        a, b = _each_composed((ours, theirs), seed, image=image, bboxes=boxes, categories=list(range(n)),
                              keys=list(range(n)))
        assert a["bboxes"].tobytes() == b["bboxes"].tobytes() and list(a["keys"]) == list(b["keys"]), seed
        assert repr(a["applied_transforms"]) == repr(b["applied_transforms"]), seed
        emptied += len(b["bboxes"]) == 0
    assert emptied > 20


@pytest.mark.parametrize("thresholds", [{}, {"min_visibility": 0.3, "min_area": 4}], ids=["none", "visibility-area"])
def test_an_images_copies_give_albumentations_own_boxes_bit_for_bit(thresholds):
    """The same boxes through the same Compose copy after copy (as an image's copies go, which
    the box processor's kept conversions and filter results serve): each copy's boxes and labels
    are those of albumentations' own Compose, whatever the caller did to an earlier copy's."""
    import random

    import numpy as np


    ours, theirs = _ours_and_theirs(_box_steps, **thresholds)
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    served = 0
    for source in range(40):
        n = int(rng.integers(1, 7))
        boxes = np.column_stack([rng.uniform(0, 60, n), rng.uniform(0, 40, n), rng.uniform(1, 20, n),
                                 rng.uniform(1, 20, n)])
        categories = rng.integers(0, 5, n).tolist()
        for copy in range(4):
            seed = source * 10 + copy
            results = []
            for compose in (ours, theirs):
                compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
                results.append(compose(image=image, bboxes=boxes.copy(), categories=list(categories),
                                       keys=list(range(n))))
            a, b = results
            assert a["bboxes"].dtype == b["bboxes"].dtype and a["bboxes"].tobytes() == b["bboxes"].tobytes()
            assert list(a["categories"]) == list(b["categories"]) and list(a["keys"]) == list(b["keys"])
            a["bboxes"][...] = -1.0  # what a caller does with its copy's boxes reaches no other copy
        served += ours.processors["bboxes"]._converted is not None
    assert served == 40


def test_what_the_box_processor_keeps_never_stands_for_other_labels_or_thresholds():
    """The hostile tester's three: a label 0.0 then -0.0 (equal, not the same bits), a label
    changed in place between calls, thresholds changed on a live Compose."""
    import random
    import struct

    import albumentations as A
    import numpy as np

    from augpipe.recipe import compose_class

    def both(steps, labels_of, before=lambda k, composes: None, calls=3):
        params = A.BboxParams(format="coco", label_fields=["categories"], clip=True)
        composes = [c(steps(), bbox_params=params, p=1.0) for c in (compose_class(), A.Compose)]
        for k in range(calls):
            before(k, composes)
            got = []
            for compose in composes:
                compose.set_random_state(np.random.default_rng(0), random.Random(0))
                got.append(compose(image=np.zeros((60, 80, 3), np.uint8), bboxes=np.array([[10.0, 10, 20, 20]]),
                                   categories=labels_of(k)))
            a, b = got
            assert a["bboxes"].tobytes() == b["bboxes"].tobytes() and a["bboxes"].shape == b["bboxes"].shape, k
            assert [struct.pack("<d", float(v)) for v in a["categories"]] == \
                [struct.pack("<d", float(v)) for v in b["categories"]], k

    both(lambda: [A.HorizontalFlip(p=0.0)], lambda k: [[0.0], [0.0], [-0.0]][k])
    held = np.array(3.0)

    def change(k, composes):
        held[...] = 3.0 + 4 * (k == 2)
    both(lambda: [A.HorizontalFlip(p=0.0)], lambda k: [1] if k == 0 else [held], change)

    def stricter(k, composes):
        for compose in composes:
            compose.processors["bboxes"].params.min_area = 100.0 * (k == 2)
    both(lambda: [A.NoOp()], lambda k: [1], stricter)


def test_our_compose_takes_albumentations_path_for_what_it_does_not_cover():
    import random

    import albumentations as A
    import numpy as np

    from augpipe.recipe import compose_class

    voc = A.BboxParams(format="pascal_voc", label_fields=["categories"], clip=True)
    assert type(compose_class()([A.HorizontalFlip()], bbox_params=voc).processors["bboxes"]).__name__ == \
        "BboxProcessor"
    params = A.BboxParams(format="coco", label_fields=["categories"], clip=True)
    ours, theirs = (c([A.Affine(translate_percent=0.4, p=1)], bbox_params=params) for c in (compose_class(), A.Compose))
    image = np.zeros((50, 60, 3), np.uint8)
    for boxes in ([[1, 2, 10, 20], [30, 20, 5, 5]], np.zeros((0, 4)), np.array([[1, 2, 10, 20]], np.int64)):
        results = []
        for compose in (ours, theirs):
            compose.set_random_state(np.random.default_rng(3), random.Random(3))
            results.append(compose(image=image, bboxes=boxes, categories=[7] * len(boxes)))
        assert np.array_equal(np.asarray(results[0]["bboxes"]), np.asarray(results[1]["bboxes"]))
        assert list(results[0]["categories"]) == list(results[1]["categories"])
    with pytest.raises(ValueError, match="x_max is less than or equal to x_min"):
        ours(image=image, bboxes=np.array([[60.0, 2, 0.5, 20]]), categories=[1])  # no width once clipped


QUIET = dict(progress=False, workers=1)


def test_check_refuses_a_transform_the_dataset_cannot_use(tmp_path, cli, scenes):
    path = tmp_path / "r.yaml"
    path.write_text("transforms: [{MaskDropout: {p: 1}}]\n")
    result = cli("expand", scenes["coco"], "-r", path, "-o", tmp_path / "o", "-q", "-w", "1")
    assert result.exit_code == 2 and "needs 'mask', which a detection dataset does not have" in result.output
    assert cli("check", path, "--task", "segmentation").exit_code == 0


def test_a_reflecting_border_is_a_warning_for_detection_and_leaves_no_empty_box(scenes, tmp_path, cli):
    path = tmp_path / "mirror.yaml"
    path.write_text("output: {format: png}\ntransforms: [{Affine: {translate_percent: {x: [0.2, 0.3], y: 0},"
                    " border_mode: 4, p: 1}}]\n")
    result = cli("check", path, "--task", "detection")
    assert result.exit_code == 1 and "mirrors objects into the border" in result.output
    out = tmp_path / "out"
    m = expand(scenes["coco"], path, out, ExpandOptions(val_fraction=0, **QUIET))
    assert any("mirrors objects" in w for w in m["warnings"])
    for row in pq.read_table(out, columns=["objects"]).to_pylist():
        assert all(w > 0 and h > 0 for _, _, w, h in row["objects"]["bbox"])
    assert cli("inspect", out, "--verify").exit_code == 0


def test_a_recipe_key_of_another_kind_is_a_warning_on_this_one():
    from augpipe.recipe import check_for_kind, parse_recipe
    from augpipe.targets import kind_for

    recipe = parse_recipe("keypoint_flip: {left_eye: right_eye}\ntransforms: [{HorizontalFlip: {p: 0.5}}]", "r.yaml")
    assert check_for_kind(recipe, kind_for("detection")) == [
        "keypoint_flip: this detection dataset does not use it (another kind of target does)"]


def test_the_lean_box_affine_is_albumentations_bboxes_affine_bit_for_bit():
    """Rotations, shears, scales and shifts (and the identity, and matrices albumentations takes
    for one) of boxes in and out of the canvas, in both rotate methods, float32 and float64, with
    label columns and with corners that are not numbers: the boxes of albumentations'
    `bboxes_affine`, to the bit; reflected borders take its own path."""
    import cv2
    import numpy as np
    from albumentations.augmentations.geometric import functional as F

    from augpipe.recipe import lean_bboxes_affine

    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1.0, np.nan, np.inf, -np.inf])
    dropped = kept = 0
    for k in range(3000):
        n, columns = int(rng.integers(1, 9)), int(rng.integers(4, 7))
        boxes = rng.uniform(-0.3, 1.1, (n, columns))
        boxes[:, 2:4] = boxes[:, 0:2] + rng.uniform(0.001, 0.6, (n, 2))
        boxes = boxes.astype(rng.choice([np.float32, np.float64]))
        if k % 11 == 0:
            boxes.flat[rng.integers(0, boxes.size, 2)] = rng.choice(special, 2)
        h, w = int(rng.integers(1, 1500)), int(rng.integers(1, 1500))
        out_shape = (h, w) if k % 3 else (int(rng.integers(1, 1500)), int(rng.integers(1, 1500)))
        matrix = np.vstack([cv2.getRotationMatrix2D((w * rng.uniform(0, 1), h * rng.uniform(0, 1)),
                                                    float(rng.uniform(-180, 180)), float(rng.uniform(0.3, 2))),
                            [0, 0, 1]])
        if k % 5 == 0:
            matrix[:2, :2] += rng.uniform(-0.3, 0.3, (2, 2))  # shear
        if k % 13 == 0:
            matrix = np.eye(3) + (0 if k % 2 else 1e-9)  # the identity, and a matrix allclose to it
        if k % 17 == 0:
            matrix[:2] = rng.choice([0.0, -0.0, 1.0], (2, 3))  # degenerate: every point on a line or one point
        method = rng.choice(["ellipse", "largest_box"])
        # reflected (now and then: slow): albumentations' own path, which inverts the matrix
        border = int(rng.choice([cv2.BORDER_CONSTANT, cv2.BORDER_REPLICATE]))
        if k % 20 == 1 and k % 17:
            border = cv2.BORDER_REFLECT_101
        with np.errstate(all="ignore"):
            theirs = F.bboxes_affine(boxes, matrix, method, (h, w), border, out_shape)
            ours = lean_bboxes_affine(boxes, matrix, method, (h, w), border, out_shape)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.tobytes() == theirs.tobytes(), k
        if border != cv2.BORDER_REFLECT_101:  # reflected boxes come back more than went in
            dropped, kept = dropped + n - len(theirs), kept + len(theirs)
    assert dropped > 500 and kept > 3000
    empty = np.zeros((0, 6), np.float32)
    assert lean_bboxes_affine(empty, np.eye(3), "ellipse", (5, 5), 0, (5, 5)) is empty


def test_the_ellipse_points_moved_as_three_rows_give_albumentations_own_boxes():
    """`_ellipse_bounds` (the points as 3 rows of 360 × N, moved by M @ rows): rotations at and
    near quarter turns, shears, scales, mirror images and random matrices, boxes from a
    thousandth of a pixel to wider than the image and on its edges (bounds of 0.0 and -0.0, which
    take every point's path): the boxes of albumentations' `bboxes_affine`, to the bit, most of
    them by the rows."""
    import numpy as np
    from albumentations.augmentations.geometric import functional as F

    from augpipe.recipe import _ellipse_bounds, _ellipse_points, _rows_product_agrees, lean_bboxes_affine

    rng = np.random.default_rng(5)
    by_rows = zeros = 0
    for k in range(4000):
        n = int(rng.integers(1, 20))
        h, w = int(rng.integers(2, 2000)), int(rng.integers(2, 2000))
        corner = rng.uniform(-0.2, 1.0, (n, 2))
        if k % 7 == 0:
            corner[:, int(rng.integers(0, 2))] = 0.0  # on the edge: a bound of zero after a quarter turn
        sides = rng.uniform(0, 0.6, (n, 2)) ** rng.choice([1, 3, 8])
        boxes = np.hstack([corner, corner + sides, rng.integers(0, 3, (n, 2))])
        boxes = boxes.astype(rng.choice([np.float32, np.float64]))
        angle = float(rng.choice([90.0, 180.0, -90.0, 45.0, 1e-9])) if k % 5 == 0 else float(rng.uniform(-180, 180))
        if k % 4 == 3:
            matrix = np.vstack([rng.normal(0, 1, (2, 3)) * [1, 1, 100], [0, 0, 1]])  # mirror images among them
        else:
            matrix = F.create_affine_transformation_matrix(
                {"x": float(rng.uniform(-40, 40)), "y": 0}, {"x": float(rng.uniform(-20, 20)) if k % 4 else 0, "y": 0},
                {"x": float(rng.uniform(0.5, 1.5)), "y": 1}, angle, (w / 2, h / 2))
        if k % 9 == 0:  # a shift that takes the first box's least x to 0.0 exactly
            shift = -float(_ellipse_points(boxes[:1].astype(np.float64) * [w, h, w, h, 1, 1])[0, :, 0].min())
            matrix = np.array([[1.0, 0.0, shift], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        theirs = F.bboxes_affine(boxes, matrix, "ellipse", (h, w), 0, (h, w))
        ours = lean_bboxes_affine(boxes, matrix, "ellipse", (h, w), 0, (h, w))
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.tobytes() == theirs.tobytes(), k
        moved = _ellipse_bounds(boxes.astype(np.float64) * [w, h, w, h, 1, 1], matrix)
        by_rows += moved is not None
        zeros += bool((theirs[:, :4] == 0).any())
    assert zeros > 50  # bounds of zero were there, and took the whole path
    if _rows_product_agrees():  # a machine whose BLAS sums M @ rows otherwise takes every point's path
        assert 2500 < by_rows < 4000


@pytest.mark.parametrize("name", ["mask", "masks", "images", "volume"])
def test_a_label_field_named_as_a_target_gets_albumentations_own_checks(name):
    """Our Compose's preprocess skips albumentations' shape checks for one image and its boxes;
    a label field named as one of its targets is checked as albumentations checks it."""
    import albumentations as A
    import numpy as np

    from augpipe.recipe import compose_class

    params = A.BboxParams(format="coco", label_fields=[name], clip=True)
    data = {"image": np.zeros((40, 50, 3), np.uint8), "bboxes": np.array([[2.0, 3.0, 10.0, 12.0]]), name: [1]}
    with pytest.raises(Exception) as theirs:
        A.Compose([A.HorizontalFlip(p=1)], p=1.0, bbox_params=params)(**data)
    with pytest.raises(type(theirs.value), match=re.escape(str(theirs.value))):
        compose_class()([A.HorizontalFlip(p=1)], p=1.0, bbox_params=params)(**data)


def test_our_compose_moves_boxes_by_the_lean_affine_where_it_covers():
    import albumentations as A

    from augpipe.recipe import compose_class

    params = A.BboxParams(format="coco", label_fields=["categories"], clip=True)
    steps = [A.Affine(), A.ShiftScaleRotate(), A.SafeRotate(), A.Rotate(), A.Rotate(crop_border=True),
             A.OneOf([A.Rotate(rotate_method="ellipse")]), A.Perspective()]
    compose = compose_class()(steps, bbox_params=params)
    leaned = [getattr(t._key2func["bboxes"], "func", None) is not None
              for t in [*compose.transforms[:5], compose.transforms[5].transforms[0], compose.transforms[6]]]
    assert leaned == [True, True, True, True, False, True, False]


def test_the_lean_box_conversions_are_albumentations_own_bit_for_bit():
    """COCO boxes in pixels into albumentations' form and back (`preprocess`, `postprocess`), few
    boxes and many, over the edges, of no size, with signed zeros and corners not numbers: the
    arrays and labels of albumentations' own BboxProcessor, or its own error."""
    import albumentations as A
    import numpy as np
    from albumentations.core.bbox_utils import BboxProcessor

    from augpipe.recipe import lean_box_processor

    params = A.BboxParams(format="coco", label_fields=["categories", "keys"], clip=True)
    ours, theirs = lean_box_processor()(params), BboxProcessor(params)
    rng = np.random.default_rng(5)
    special = np.array([0.0, -0.0, -1e-300, 1e-300, np.nan, np.inf])
    errors = converted = 0
    for k in range(2000):
        n = int(rng.integers(1, 8) if k % 4 else rng.integers(14, 30))
        h, w = int(rng.integers(1, 900)), int(rng.integers(1, 900))
        boxes = np.column_stack([rng.uniform(-20, w, n), rng.uniform(-20, h, n), rng.uniform(0, w / 2, n),
                                 rng.uniform(0, h / 2, n)])
        if k % 5 == 0:
            boxes.flat[rng.integers(0, boxes.size, 2)] = rng.choice(special, 2)
        categories = rng.integers(0, 9, n).tolist()
        results = []
        for proc in (ours, theirs):
            data = {"image": np.zeros((h, w, 1), np.uint8), "bboxes": boxes.copy(), "categories": list(categories),
                    "keys": list(range(n))}
            try:
                proc.preprocess(data)
                before = data["bboxes"].copy()
                proc.postprocess(data)
                results.append((before, data))
            except ValueError as exc:
                results.append(str(exc))
        if isinstance(results[0], str) or isinstance(results[1], str):
            assert results[0] == results[1], k
            errors += 1
            continue
        (a, ours_out), (b, theirs_out) = results
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), k
        a, b = ours_out["bboxes"], theirs_out["bboxes"]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), k
        assert ours_out["categories"] == theirs_out["categories"] and ours_out["keys"] == theirs_out["keys"], k
        converted += len(a) > 0
    assert errors > 20 and converted > 1000


def test_the_lean_box_paths_give_albumentations_way_for_what_they_do_not_cover():
    """The hostile tester's three: labels albumentations takes as not numbers (np.int64 past
    2^53), an image size given as numpy integers, boxes of another float type."""
    import albumentations as A
    import numpy as np
    from albumentations.core.bbox_utils import filter_bboxes

    from augpipe.recipe import compose_class, lean_filter

    params = A.BboxParams(format="coco", label_fields=["categories"], clip=True)
    image = np.zeros((50, 50, 3), np.uint8)
    for labels in ([np.int64(2**60 + 2**36 + 1)], [3], [np.int64(7)]):
        got = [c([A.HorizontalFlip(p=1)], bbox_params=params)(image=image, bboxes=np.array([[1.0, 2, 10, 10]]),
                                                             categories=labels)["categories"]
               for c in (compose_class(), A.Compose)]
        assert repr(got[0]) == repr(got[1])
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (14, 5)).astype(np.float32)
    boxes[:, 2:4] = boxes[:, :2] + rng.uniform(1e-4, 0.3, (14, 2)).astype(np.float32)
    for shape in ({"height": np.int64(1274), "width": np.int64(768)}, {"height": 1274, "width": 768}):
        for b in (boxes, boxes[:5], boxes.astype(np.longdouble), boxes.astype(np.float16)):
            theirs, ours = filter_bboxes(b, shape, 0, 1.0, 0, 0), lean_filter(b, shape, 0, 1.0, 0, 0)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.tobytes() == theirs.tobytes()


def test_recipes_parsed_in_threads_at_once_each_get_their_notes_and_leave_warnings_as_they_were():
    """A hostile tester's: the studio parses recipes in threads; catch_warnings(record=True) in two
    at once lost or doubled albumentations' notes and left every later warning swallowed."""
    import threading
    import warnings

    text = ("transforms:\n  - ShiftScaleRotate: {p: 1}\n  - OneOf:\n      transforms:\n"
            "        - ShiftScaleRotate: {p: 1}\n        - HorizontalFlip: {p: 1}\n")
    filters, show = list(warnings.filters), warnings._showwarnmsg_impl
    counts: list[int] = []

    def parse() -> None:
        for _ in range(20):
            counts.append(sum("albumentations says" in n for n in parse_recipe(text, "t.yaml").notes))

    threads = [threading.Thread(target=parse) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [2] * 80
    assert warnings.filters == filters and warnings._showwarnmsg_impl is show


def test_a_process_forked_while_another_thread_holds_the_warnings_lock_can_parse():
    """A child forked (a worker, a set-up process) while a studio thread held the lock our
    catch_warnings take turns by would have waited on it forever."""
    import os
    import threading

    from augpipe import recipe as module

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with module.silenced():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: parse a recipe (its notes take the lock), then leave at once
            try:
                parse_recipe("transforms: [{ShiftScaleRotate: {p: 1}}]\n", "t.yaml")
                os._exit(0)
            finally:
                os._exit(1)
        import time

        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0, "the child waited on the lock"
    finally:
        release.set()
        thread.join()


def test_the_filter_a_compose_adds_for_albumentations_is_kept_while_another_thread_is_silenced():
    """A hostile tester's: build_compose added its filter of albumentations' per-image warnings
    outside the lock: inside another thread's catch_warnings, it went with that one's copy."""
    import threading
    import warnings

    from augpipe.recipe import build_compose, silenced

    recipe = parse_recipe("transforms:\n  - ToGray: {p: 1, num_output_channels: 1}\n", "g.yaml")
    inside, built = threading.Event(), threading.Event()

    def other() -> None:
        with silenced():
            inside.set()
            built.wait(0.5)  # the compose's thread waits on the lock: no more than this

    def build() -> None:
        build_compose(recipe)
        built.set()

    saved = list(warnings.filters)
    try:
        warnings.filters[:] = [f for f in warnings.filters if "albumentations" not in str(getattr(f[3], "pattern", f[3]))]
        holder = threading.Thread(target=other)
        holder.start()
        inside.wait(10)
        builder = threading.Thread(target=build)
        builder.start()
        builder.join()
        holder.join()
        assert any(f[2] is UserWarning and "albumentations" in str(getattr(f[3], "pattern", f[3]))
                   for f in warnings.filters)
    finally:
        warnings.filters[:] = saved
