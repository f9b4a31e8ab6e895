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
    for missing, said in ((("matplotlib",), "matplotlib is not installed"), (("torch",), "PyTorch is not installed"),
                          (("torch", "matplotlib"), "PyTorch and matplotlib are not installed")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, m=missing: None if name in m else find_spec(name, *a))
        result = cli("demo", tmp_path / "proj", "-q", "-w", "1")
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        assert result.exit_code == 0, result.output
        assert f"training: skipped, {said} (pip install 'augpipe[train]' adds it)" in result.output
