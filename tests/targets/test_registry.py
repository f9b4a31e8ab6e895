"""The kinds are found by module: a module of augpipe/targets that defines KIND is a kind."""

import re
import sys
from pathlib import Path

import pytest

import augpipe.targets as targets
from augpipe.targets.base import Target


def test_the_registry_lists_exactly_the_modules_that_define_kind():
    folder = Path(targets.__file__).parent
    defining = {p.stem for p in folder.glob("*.py") if re.search(r"^KIND = ", p.read_text(), re.M)}
    assert {cls.__module__.rsplit(".", 1)[1] for cls in targets.registry().values()} == defining
    assert all(issubclass(cls, Target) and name == cls.name for name, cls in targets.registry().items())
    assert list(targets.registry()) == sorted(targets.registry())
    assert {"classification", "detection", "keypoints", "segmentation"} <= set(targets.registry())


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy.py").write_text(
        "from augpipe.targets.base import Target\n\n"
        "class Toy(Target):\n    name = 'toy'\n\n"
        "    @classmethod\n    def recipe_fields(cls):\n        return {'toy_shade': (str, 'grey')}\n\n"
        "KIND = Toy\n")
    monkeypatch.setattr(targets, "__path__", [*targets.__path__, str(tmp_path)])
    _clear()
    yield
    sys.modules.pop("augpipe.targets.toy", None)
    _clear()


def _clear():
    from augpipe import recipe

    for cache in (targets.registry, recipe._kind_fields, recipe._recipe_model):
        cache.cache_clear()


def test_a_new_module_defining_kind_is_a_kind(toy_module):
    assert "toy" in tuple(targets.registry())
    assert targets.kind_for("toy").name == "toy"
    assert type(targets.for_manifest({"task": "toy"})).__name__ == "Toy"
    assert "toy" in targets.check_choices()


def test_a_kind_adds_its_own_recipe_keys(toy_module):
    from augpipe.recipe import parse_recipe

    text = "transforms:\n  - HorizontalFlip: {}\n"
    assert parse_recipe(f"toy_shade: red\n{text}").kind_options == {"toy_shade": "red"}
    assert parse_recipe(text).kind_options == {}


def test_a_recipe_key_no_kind_declares_is_refused():
    from augpipe.errors import RecipeError
    from augpipe.recipe import parse_recipe

    with pytest.raises(RecipeError, match="toy_shade"):
        parse_recipe("toy_shade: red\ntransforms:\n  - HorizontalFlip: {}\n")


def test_a_kind_is_derived_from_its_manifest_as_it_records_itself():
    for name, kind in targets.check_choices().items():
        manifest = {"task": kind.name, "classes": ["a", "b"], **kind.manifest_fields()}
        again = targets.for_manifest(manifest)
        assert type(again) is type(kind) and again.manifest_fields() == kind.manifest_fields(), name
    # what 0.3's manifests hold, key for key, and what a keypoints dataset's adds
    assert {n: k.manifest_fields() for n, k in targets.check_choices().items()} == {
        "classification": {"instance_masks": False}, "detection": {"instance_masks": False},
        "detection-masks": {"instance_masks": True}, "segmentation": {"instance_masks": False},
        "keypoints": {"instance_masks": False, "keypoints": {"keypoint_names": [], "skeleton": [], "flip_idx": None}}}


def test_an_unknown_kind_or_option_is_one_line():
    with pytest.raises(ValueError, match=f"unknown target kind 'points': one of {', '.join(targets.registry())}$"):
        targets.kind_for("points")
    with pytest.raises(ValueError, match="a classification target takes no option instance_masks"):
        targets.kind_for("classification", instance_masks=True)


def test_which_training_tasks_a_kind_feeds():
    kinds = targets.check_choices()
    assert kinds["classification"].train_tasks == ("classification",)
    assert kinds["detection"].train_tasks == ("localisation", "detection")
    assert kinds["detection-masks"].train_tasks == ("localisation", "detection", "segmentation")
    assert kinds["segmentation"].train_tasks == ("segmentation",)
    assert kinds["keypoints"].train_tasks == ("localisation", "detection")  # its boxes
