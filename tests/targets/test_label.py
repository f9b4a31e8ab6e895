"""Classification's target (augpipe/targets/label.py): its audit."""

from __future__ import annotations

from augpipe.formats.base import SourceFile
from augpipe.targets import kind_for


def test_audit_of_a_class_an_unknown_class_and_no_class():
    kind = kind_for("classification")
    cat = kind.audit(SourceFile("cat/a.jpg", None, "cat", 1, 0), None, (32, 24), ["cat", "dog"])
    assert (cat.problems, cat.signature) == ([], "cat")
    assert cat.facts == {"size": [32, 24], "objects": 1, "classes": {"cat": 1}}
    bird = kind.audit(SourceFile("bird/a.jpg", None, "bird", 1, 0), None, (32, 24), ["cat", "dog"])
    assert [c for c, _, _ in bird.problems] == ["unknown_class"]
    none = kind.audit(SourceFile("a.jpg", None, None, 1, 0), None, (32, 24), ["cat", "dog"])
    assert (none.problems, none.facts["objects"], none.signature) == ([], 0, None)
    row = kind.audit_row({"label": 5, "width": 32, "height": 24}, ["cat", "dog"])
    assert [c for c, _, _ in row.problems] == ["unknown_class"]
