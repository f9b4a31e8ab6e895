"""The recipes augpipe ships (augpipe/recipes/*.yaml): where they are, and each one's name and
description read straight from its YAML, without validating it through pydantic and
albumentations (the tests load every one with `recipe.load_recipe`), so that `augpipe recipes`
starts in a fraction of a second."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_dir() -> Path:
    return Path(str(resources.files("augpipe") / "recipes"))


def bundled_recipes() -> list[Path]:
    return sorted(bundled_dir().glob("*.yaml"))


def summary(path: Path) -> tuple[str, str]:
    """(name, description) of a bundled recipe, as `load_recipe(path)` gives them."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data.get("name") or path.stem, (data.get("description") or "").strip()
