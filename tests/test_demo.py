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
