"""Round trips through the formats' one annotation type: a Scan a reader gave, written by a
format's writer and read back by its reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath

from PIL import Image

from augpipe.formats import module, scan
from augpipe.formats.base import Header, Item, MaskRef, Objects
from augpipe.store import open_store


def items(found, root: Path) -> list[Item]:
    """A Scan's images as a writer takes them: each under its file name (a classified one in its
    class's folder), its objects on its own size, its mask as its bytes."""
    out = []
    for f in found.files:
        path = root / f.relpath
        with Image.open(path) as im:
            w, h = im.size
        target = f.target
        if isinstance(target, Objects):
            target = dataclasses.replace(target, canvas=(w, h))
        elif isinstance(target, MaskRef):
            target = (root / target.path).read_bytes()
        name = PurePosixPath(f.relpath).name
        out.append(Item(f.split or "train", f"{f.class_name}/{name}" if f.class_name else name, path.read_bytes(),
                        w, h, target))
    return out


def round_trip(found, root: Path, out: Path, fmt: str, options: dict, **read):
    """(what was written, the Scan of `out` once `fmt` wrote `found` there)."""
    written = items(found, root)
    module(fmt).write(open_store(out), written, Header(found.classes, found.category_ids), options)
    return written, scan(out, format=fmt, **read)


def assert_same_boxes(found, root: Path, again, out: Path, atol: float = 0.0) -> None:
    """Every image of `found` is in `again`, with the same objects: classes, and boxes in pixels."""
    import numpy as np

    def objects(scan_, folder):
        return {PurePosixPath(i.name).name: ([scan_.classes[c] for c in i.target.categories], i.target.xywh())
                for i in items(scan_, folder)}

    before, after = objects(found, root), objects(again, out)
    assert sorted(after) == sorted(before)
    for name, (classes, boxes) in before.items():
        assert after[name][0] == classes, name
        np.testing.assert_allclose(np.reshape(after[name][1], (-1, 4)), np.reshape(boxes, (-1, 4)), atol=atol,
                                   err_msg=name)
