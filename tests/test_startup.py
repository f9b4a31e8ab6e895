"""Start-up: the commands that only talk (help, recipes, the version) load none of the heavy
libraries that expanding needs, and `augpipe recipes`, which reads the bundled recipes without
validating them, says what validating them says."""

from __future__ import annotations

import re
import subprocess

import pytest

from augpipe.bundled import bundled_recipes
from augpipe.cli import app
from augpipe.recipe import load_recipe
from conftest import ENV, ROOT, augpipe

HEAVY = ("albumentations", "cv2", "numpy", "pyarrow", "PIL", "scipy", "pandas", "matplotlib", "torch", "ray")
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def imported(*args: str) -> tuple[str, set[str]]:
    """(stdout, the top-level packages imported) of `augpipe ARGS` in a process of its own."""
    cmd = augpipe(*args)
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", done.stderr, re.MULTILINE)
    assert "augpipe.cli" in names  # the report was read
    return done.stdout, {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["recipes"], *[[c, "--help"] for c in COMMANDS]],
                         ids=" ".join)
def test_talking_commands_load_no_heavy_library(args):
    out, packages = imported(*args)
    assert out.strip()
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))


def test_recipes_says_what_the_validated_recipes_say():
    out, _ = imported("recipes")
    lines = [line for line in out.splitlines() if line.strip()][:-1]  # the last: how to use one
    expected = []
    for path in bundled_recipes():
        recipe = load_recipe(path)
        first = recipe.description.split(". ")[0].rstrip(".")
        expected.append(f"{recipe.name:<10} {first}.")
    assert lines == expected
