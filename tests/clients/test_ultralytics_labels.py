"""On planted bad YOLO labels, every file ultralytics' own label check (`verify_image_label`, what
its YOLODataset runs on every image) rejects is flagged by augpipe's health checks too: the
format's problems, the kind's audit and the checks across files, as `augpipe inspect` runs them.
`side_by_side` is the table of docs/bench.md ("Label checks against ultralytics")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ultralytics")
os.environ.setdefault("YOLO_OFFLINE", "1")

from conftest import img, write  # noqa: E402

from augpipe.formats import scan  # noqa: E402
from augpipe.health.labels import across  # noqa: E402
from augpipe.targets import for_scan  # noqa: E402

# name: (label file, or None for none; ultralytics' verdict; augpipe's checks), on a 64×48 image of a
# dataset of 2 classes. The verdicts are ultralytics' rules (ultralytics/data/utils.py): values over
# 1.01 or under 0 (-0.01 with a positive size) refused, whatever the box's edges.
DETECT = {
    "good": ("0 0.5 0.5 0.2 0.2", "ok", set()),
    "over_one": ("0 0.5 0.5 0.2 1.3", "corrupt", {"box_outside"}),
    "centre_past": ("0 1.2 0.5 0.1 0.1", "corrupt", {"box_outside"}),
    "negative": ("0 -0.05 0.5 0.05 0.1", "corrupt", {"box_outside"}),
    "negative_width": ("0 0.5 0.5 -0.005 0.1", "corrupt", {"box_degenerate"}),
    "class_past_nc": ("2 0.5 0.5 0.2 0.2", "corrupt", {"unknown_class"}),
    "class_fraction": ("0.5 0.5 0.5 0.2 0.2", "corrupt", {"unknown_class"}),
    "six_columns": ("0 0.5 0.5 0.2 0.2 0.9", "corrupt", {"annotation_unreadable"}),
    "four_columns": ("0 0.5 0.5 0.2", "corrupt", {"annotation_unreadable"}),
    "word": ("0 0.5 abc 0.2 0.2", "corrupt", {"annotation_unreadable"}),
    "nan": ("0 nan 0.5 0.2 0.2", "corrupt", {"annotation_unreadable"}),
    "latin1": (b"0 0.5 0.5 0.2 0.2 \xe9", "corrupt", {"annotation_unreadable"}),
    "box_and_polygon": ("0 0.1 0.1 0.5 0.1 0.5 0.5\n0 0.5 0.5 0.2 0.2", "corrupt", {"annotation_unreadable"}),
    "bad_line_among_good": ("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1\n0 0.2 0.2 0.1 0.1", "corrupt",
                            {"annotation_unreadable"}),
    "empty": ("", "empty", {"no_labels"}),
    "missing": (None, "missing", {"no_labels"}),
    "duplicate_rows": ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2", "duplicates removed", {"box_duplicate"}),
    "edge_past_one": ("0 0.95 0.5 0.2 0.2", "ok", {"box_outside"}),  # its right edge at 1.05
    "hair_over": ("0 0.5 0.5 1.0008 0.2", "ok", {"box_outside"}),  # 0.0004 over each side: clipped
    "tiny": ("0 0.5 0.5 0.025 0.5", "ok", {"box_tiny"}),  # 1.6 px wide
    "near_duplicate": ("1 0.5 0.5 0.3 0.3\n1 0.505 0.5 0.3 0.3", "ok", {"box_duplicate"}),  # IoU 0.97
}
# a pose dataset of kpt_shape [2, 3]
POSE = {
    "pose_good": ("0 0.5 0.5 0.4 0.4 0.4 0.4 2 0.6 0.6 1", "ok", set()),
    "pose_columns": ("0 0.5 0.5 0.4 0.4 0.4 0.4 2", "corrupt", {"annotation_unreadable"}),
    "pose_outside": ("0 0.5 0.5 0.4 0.4 1.2 0.4 2 0.6 0.6 2", "corrupt", {"keypoint_outside"}),
    "pose_visibility": ("0 0.5 0.5 0.4 0.4 0.4 0.4 3 0.6 0.6 2", "ok", {"annotation_unreadable"}),
}


def planted(root: Path, cases: dict, pose: bool) -> Path:
    write(root / "data.yaml", "train: images/train\nval: images/train\nnames: [a, b]\n"
                              + ("kpt_shape: [2, 3]\nflip_idx: [1, 0]\n" if pose else ""))
    for k, (name, (text, _, _)) in enumerate(cases.items()):
        img(root / f"images/train/{name}.jpg", boxes=[(k % 40, k // 40 * 10, 10, 10)])  # every image its own
        if text is not None:
            write(root / f"labels/train/{name}.txt", text if isinstance(text, bytes) else text + "\n")
    return root


def ultralytics_verdicts(root: Path, pose: bool) -> dict[str, str]:
    """verify_image_label on every image: corrupt, missing, empty, duplicates removed, or ok."""
    from ultralytics.data.utils import verify_image_label

    out = {}
    for image in sorted((root / "images/train").glob("*.jpg")):
        label = root / "labels/train" / f"{image.stem}.txt"
        *_, nm, nf, ne, nc, msg = verify_image_label((str(image), str(label), "", pose, 2, 2 if pose else 0,
                                                      3 if pose else 0, False))
        out[image.stem] = ("corrupt" if nc else "missing" if nm else "empty" if ne else
                           "duplicates removed" if "duplicate" in msg else "ok")
    return out


def augpipe_flags(root: Path) -> dict[str, set[str]]:
    """Every check augpipe's health report raises on each image, as `inspect` runs them: the
    format's problems, each readable image's audit, then the checks across files."""
    found = scan(str(root))
    kind = for_scan(found)
    flags: dict[str, set[str]] = {}

    def flag(path: str, check: str):
        flags.setdefault(Path(path).stem, set()).add(check)

    for p in found.problems:
        flag(p.path, p.check)
    seen = []
    for f in found.files:
        data = (root / f.relpath).read_bytes()
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        audit = kind.audit(f, None, (w, h), found.classes)
        for check, _, _ in audit.problems:
            flag(f.relpath, check)
        seen.append((f.relpath, f.split, hashlib.sha256(data).hexdigest(), audit))
    for p in across(seen, found.classes, kind):
        flag(p.path, p.check)
    return flags


@pytest.mark.parametrize("cases, pose", [(DETECT, False), (POSE, True)], ids=["detect", "pose"])
def test_every_label_file_ultralytics_rejects_augpipe_flags(tmp_path, cases, pose):
    root = planted(tmp_path / "planted", cases, pose)
    verdicts = ultralytics_verdicts(root, pose)
    assert verdicts == {name: verdict for name, (_, verdict, _) in cases.items()}  # the planted set is as meant
    flags = augpipe_flags(root)
    assert {name: flags.get(name, set()) for name in cases} == {name: checks for name, (_, _, checks) in cases.items()}
    refused = {name for name, v in verdicts.items() if v != "ok"}
    assert refused <= set(flags)


def side_by_side(tmp_path: Path) -> str:
    """The markdown table of docs/bench.md."""
    lines = ["| planted label file | ultralytics `verify_image_label` | augpipe flags |", "| --- | --- | --- |"]
    for cases, pose in ((DETECT, False), (POSE, True)):
        root = planted(tmp_path / ("pose" if pose else "detect"), cases, pose)
        verdicts, flags = ultralytics_verdicts(root, pose), augpipe_flags(root)
        for name, (text, _, _) in cases.items():
            shown = "(no file)" if text is None else repr(text)[2:-1] if isinstance(text, bytes) else \
                text.replace("\n", " ⏎ ") or "(empty)"
            flagged = ", ".join(sorted(flags.get(name, ()))) or "—"
            lines.append(f"| {name}: `{shown}` | {verdicts[name]} | {flagged} |")
    return "\n".join(lines)
