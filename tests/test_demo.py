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
