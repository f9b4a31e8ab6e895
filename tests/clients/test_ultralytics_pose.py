"""ultralytics' pose loader reads augpipe's YOLO pose export of a flipped COCO keypoints dataset:
check_det_dataset and YOLODataset(task="pose"), no image dropped, the shards' keypoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")
os.environ.setdefault("YOLO_OFFLINE", "1")

from augpipe import ExpandOptions, expand  # noqa: E402
from augpipe.export import export  # noqa: E402
from augpipe.recipe import parse_recipe  # noqa: E402
from keypointed import FLIP, NAMES, by_name, coco_keypoints, points  # noqa: E402


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pose")
    expand(coco_keypoints(root / "src", n=6), parse_recipe(FLIP), root / "ds",
           ExpandOptions(workers=1, progress=False))
    return root / "ds"


def test_ultralytics_pose_loader_reads_the_export_whole(flipped, tmp_path, monkeypatch):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file

    out = tmp_path / "yolo"
    assert export(flipped, "yolo", out, progress=False)["yolo_task"] == "pose"
    rows = by_name(flipped)
    monkeypatch.chdir(tmp_path)
    data = check_det_dataset(str(out / "data.yaml"))
    assert (data["kpt_shape"], data["flip_idx"]) == ([len(NAMES), 3], [1, 0, 2, 4, 3])
    seen = 0
    for images in dict.fromkeys([data["train"], data["val"]]):  # the source's one split: val names train's
        dataset = YOLODataset(img_path=images, data=data, task="pose", imgsz=96, augment=False, cache=False,
                              hyp=get_cfg(), batch_size=1, stride=32)
        cache = load_dataset_cache_file(Path(dataset.label_files[0]).parent.with_suffix(".cache"))
        found, missing, empty, corrupt, total = cache["results"]
        assert (missing, empty, corrupt) == (0, 0, 0) and found == total == len(dataset.labels)
        for label in dataset.labels:
            held = points(rows[Path(label["im_file"]).name])
            h, w = label["shape"]
            got = np.asarray(label["keypoints"], np.float64)
            assert got.shape == held.shape
            np.testing.assert_allclose(got[..., :2], held[..., :2] / (w, h), atol=1e-3)
            assert (got[..., 2] == held[..., 2]).all()
            seen += 1
    assert seen == len(rows)
