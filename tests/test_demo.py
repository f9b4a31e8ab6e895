"""`augpipe demo` (augpipe/demo.py)."""

from __future__ import annotations

from conftest import make_folder


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, cli):
    proj = tmp_path / "proj"
    make_folder(proj / "data", per_class=3)
    before = sorted(p.relative_to(proj) for p in proj.rglob("*"))
    result = cli("demo", proj, "-q", "-w", "1")
    assert result.exit_code == 2 and "not made by augpipe demo" in result.output
    assert sorted(p.relative_to(proj) for p in proj.rglob("*")) == before


def test_demo_without_the_train_extra_names_what_is_missing(tmp_path, cli, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    absent = {name for name in ("torch", "matplotlib") if find_spec(name) is None}  # a core-only environment's
    names = {"torch": "PyTorch", "matplotlib": "matplotlib"}
    for hidden in (("matplotlib",), ("torch",), ("torch", "matplotlib")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, h=hidden: None if name in h else find_spec(name, *a))
        result = cli("demo", tmp_path / "proj", "-q", "-w", "1")
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        missing = [names[n] for n in ("torch", "matplotlib") if n in hidden or n in absent]
        said = " and ".join(missing) + (" is" if len(missing) == 1 else " are")
        assert result.exit_code == 0, result.output
        assert f"training: skipped, {said} not installed (pip install 'augpipe[train]' adds it)" in result.output


def test_the_demos_sheet_shows_the_copies_its_expansion_holds(tmp_path, cli):
    """A new user's: the sheet drew 4 copies a row where the classic recipe (and so the expansion
    beside it) makes 2."""
    import json

    import cv2
    import pyarrow.parquet as pq

    from augpipe.preview import Layout, caption_lines, preview_shards
    from augpipe.recipe import parse_recipe

    result = cli("demo", tmp_path / "proj", "-q", "-w", "1")
    assert result.exit_code == 0, result.output
    expanded = tmp_path / "proj" / "expanded"
    copies = max(max(pq.read_table(s, columns=["copy"]).column("copy").to_pylist()) for s in expanded.glob("train-*.parquet"))
    assert copies == parse_recipe(json.loads((expanded / "_augpipe.json").read_text())["recipe"]["text"]).copies
    height, width = cv2.imread(str(tmp_path / "proj" / "preview.png")).shape[:2]
    lines = caption_lines(preview_shards(expanded, rows=4), 128)
    assert width == Layout(128, caption=6 + 12 * lines).size(4, copies + 1, 0)[1]
