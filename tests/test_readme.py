"""The README's code blocks, run: Python blocks as scripts in a folder with the data they name,
`augpipe` command lines parsed by the CLI itself, recipes loaded, extras looked up."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from augpipe import ExpandOptions, expand
from augpipe.cli import app
from augpipe.recipe import parse_recipe
from conftest import make_folder, make_scenes

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def blocks(language: str) -> list[str]:
    return [text for lang, text in BLOCKS if lang == language]


def command_lines() -> list[str]:
    lines = []
    for text in blocks("bash"):
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in line.split("&&"):
                part = re.sub(r"^(\w+=\S+\s+)+", "", part.strip())  # RAY_ADDRESS=auto augpipe ...
                if part.startswith("augpipe"):
                    lines.append(part)
    return lines


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder with what the README's Python blocks name: data/ and data-expanded/, and a
    detection and a segmentation dataset, det-expanded/ and seg-expanded/."""
    root = tmp_path_factory.mktemp("readme")
    make_folder(root / "data", per_class=12)
    expand(root / "data", "flips", root / "data-expanded", ExpandOptions(workers=1, progress=False))
    for fmt, name in (("coco", "det-expanded"), ("masks", "seg-expanded")):
        expand(make_scenes(root / f"{fmt}-src", n=6, fmt=fmt), "flips", root / name,
               ExpandOptions(workers=1, progress=False))
    return root


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(folder, index):
    code = blocks("python")[index]
    for module in re.findall(r"^\s*(?:import|from) (\w+)", code, re.M):
        pytest.importorskip(module)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"README block {index} failed:\n{code}\n{done.stderr[-2000:]}"


@pytest.mark.parametrize("line", command_lines())
def test_command_lines_parse(line):
    """Every option and argument of every `augpipe` line in the README exists and parses."""
    group = typer.main.get_command(app)
    args = shlex.split(line)[1:]
    with group.make_context("augpipe", list(args), resilient_parsing=False) as ctx:
        name, command, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        command.make_context(name, rest, parent=ctx).close()


def test_recipe_blocks_load():
    for text in blocks("yaml"):
        data = yaml.safe_load(text)
        if "transforms" in data:
            parse_recipe(text)
        else:  # a fragment: the keys it shows belong in a recipe
            parse_recipe(text + "transforms: [HorizontalFlip]\n")


def test_pip_lines_name_extras_that_exist():
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w+) = ", section, re.M))
    named = {e for text in blocks("bash") for group in re.findall(r"\[([\w,]+)\]", text) for e in group.split(",")}
    named |= {e for group in re.findall(r"augpipe\[([\w,]+)\]", README) for e in group.split(",")}
    assert named and named <= extras, named - extras
