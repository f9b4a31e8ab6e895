"""Export (augpipe/export.py) as the clients read it (issue 14): what an export that leaves the
instance masks out says, and --copies 0 giving back a source's files. Each format's own writing
is tested in its file; the clients themselves load the exports in tests/clients/."""

from __future__ import annotations

import pytest

from augpipe import ExpandOptions, expand
from augpipe.export import export
from augpipe.recipe import parse_recipe
from conftest import make_scenes
from written import QUIET, boxes, masked  # noqa: F401 (fixtures)


@pytest.mark.parametrize("args, left_out", [(("yolo", "--yolo-task", "detect"), True), (("yolo",), False),
                                            (("voc",), True), (("coco",), False)])
def test_an_export_that_leaves_the_masks_out_says_so(masked, boxes, tmp_path, cli, args, left_out):
    result = cli("export", masked, "--format", *args, "--out", tmp_path / "m", "-q")
    assert result.exit_code == 0 and ("the instance masks are not written" in result.output) == left_out, result.output
    result = cli("export", boxes, "--format", args[0], "--out", tmp_path / "b", "-q")
    assert result.exit_code == 0 and "instance masks" not in result.output


@pytest.mark.parametrize("fmt, images", [("yolo", "images/train"), ("coco", "default")])
def test_copies_0_and_an_export_in_the_sources_format_give_back_its_files_byte_for_byte(tmp_path, fmt, images):
    """PNG sources under a JPEG recipe: the originals are the user's bytes, and so are the files."""
    src = make_scenes(tmp_path / "src", n=4, fmt=fmt)
    jpeg = parse_recipe("copies: 0\noutput: {format: jpeg}\ntransforms: [HorizontalFlip]\n")
    expand(src, jpeg, tmp_path / "ds", ExpandOptions(val_fraction=0, **QUIET))
    export(tmp_path / "ds", fmt, tmp_path / "out", progress=False)
    written = tmp_path / "out" / ("images/train" if fmt == "yolo" else "images/train/default")
    sources = sorted((src / images).glob("*.png"))
    assert len(sources) == 4
    for path in sources:
        assert (written / path.name).read_bytes() == path.read_bytes(), path.name
