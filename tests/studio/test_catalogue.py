import json

from augpipe.catalog import catalog, transform_entries


def _entries() -> dict[str, dict]:
    return {t["name"]: t for g in transform_entries()["groups"] for t in g["transforms"]}


def _param(transform: str, name: str) -> dict:
    return next(p for p in _entries()[transform]["params"] if p["name"] == name)


def test_groups_and_names_are_catalogs():
    groups = transform_entries()["groups"]
    assert [g["name"] for g in groups] == list(catalog())
    for group in groups:
        listed = catalog()[group["name"]]
        assert [t["name"] for t in group["transforms"]] == [name for name, _ in listed]
        for entry, (_, params) in zip(group["transforms"], listed):
            assert [p["name"] for p in entry["params"]] == [k for k, _ in params]
            assert [p["required"] for p in entry["params"]] == [d == "required" for _, d in params]


def test_the_whole_palette_is_json():
    text = json.dumps(transform_entries(), allow_nan=False)
    assert json.loads(text) == transform_entries()
    for entry in _entries().values():
        assert entry["doc"] and "\n" not in entry["doc"]
        for p in entry["params"]:
            assert set(p) == {"name", "type", "default", "required", "range", "choices", "doc"}
            assert p["type"], (entry["name"], p["name"])
            assert " * " not in p["doc"] and ": - " not in p["doc"]  # one sentence, not a docstring's list
            assert p["range"] is None or (len(p["range"]) == 2 and p["range"] != [None, None])
            if p["required"]:
                assert p["default"] is None


def test_known_transforms():
    limit = _param("Rotate", "limit")
    assert limit["type"] == "float | tuple[float, float]"
    assert limit["default"] == [-90, 90] and not limit["required"]
    assert limit["doc"] == "Range from which a random angle is picked."
    assert _param("GaussNoise", "std_range")["range"] == [0, 1]
    assert _param("Rotate", "p")["range"] == [0, 1]
    assert _param("Rotate", "border_mode")["choices"] == [0, 1, 2, 3, 4]
    assert _param("Rotate", "rotate_method")["choices"] == ["largest_box", "ellipse"]
    assert _param("GridDropout", "fill")["choices"] is None  # a number may be given too
    assert _param("GridDropout", "unit_size_range")["range"] == [2, None]  # inside `... | None`
    assert _entries()["HorizontalFlip"]["doc"] == "Flip the input horizontally around the y-axis."
    assert _param("OneOf", "transforms")["required"]
    assert _param("Affine", "shear")["doc"].endswith("in the range of `[-45, 45]`.")


def test_multi_image_steps_are_described_by_their_own_models():
    mixup = _entries()["MixUp"]
    assert mixup["doc"].startswith("The row's image and one donor's")
    assert _param("MixUp", "min_weight")["range"] == [0, 0.5]
    assert _param("MixUp", "alpha")["doc"].startswith("Beta(")
    assert _param("CopyPaste", "objects")["type"] == "int | None"
    assert _param("Mosaic", "fit_mode")["choices"] == ["cover", "contain"]
