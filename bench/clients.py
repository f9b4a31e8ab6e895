"""Each export format loaded by the clients people train with, with their own loaders, against
what the shards hold: the table in docs/clients.md.

    PYTHONPATH=. /work/clients/bin/python bench/clients.py [--scenes 60]

Needs ultralytics, pycocotools, supervision and datumaro beside augpipe's runtime dependencies
(the clients' virtual environment). The datasets are tests/clients/exported.py's: scenes of
boxes, discs, rings (a hole) and pairs of blobs (two parts), expanded with a rotating, scaling,
shifting Affine; and YOLO box lines without masks, expanded the same way.

Errors are the largest over every object: box error in pixels (a corner's distance along x or y
from the shard's box), mask mismatches in pixels (the client's mask against the shard's)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "clients")]
os.environ.setdefault("YOLO_OFFLINE", "1")

from exported import boxes_only, masked, polygon_box, run_export, shards  # noqa: E402


def xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def err(a, b) -> float:
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    return float(np.abs(a - b).max()) if len(a) else 0.0


def ultralytics(ds: Path, out: Path, task: str) -> dict:
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file

    run_export(ds, "yolo", out, yolo_task=task)
    held = shards(ds)
    os.chdir(out.parent)  # data.yaml resolves from elsewhere
    data = check_det_dataset(str(out / "data.yaml"))
    row = {"images": 0, "dropped": 0, "box": 0.0, "box vs shard box": 0.0}
    for split in sorted({s for s, _ in held}):
        dataset = YOLODataset(img_path=data[split], data=data, task=task, imgsz=96, augment=False, cache=False,
                              hyp=get_cfg(), batch_size=1, stride=32)
        for cache in {Path(f).parent.with_suffix(".cache") for f in dataset.label_files}:
            found, missing, empty, corrupt, total = load_dataset_cache_file(cache)["results"]
            row["dropped"] += missing + corrupt
        row["images"] += len(dataset.labels)
        for label in dataset.labels:
            rel = Path(label["im_file"]).relative_to(out / "images" / split).as_posix()
            objects = held[(split, rel)]
            h, w = label["shape"]
            cx, cy, bw, bh = np.asarray(label["bboxes"], float).reshape(-1, 4).T
            got = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], axis=1)
            want = [polygon_box(o["mask"], o["box"]) if task == "segment" and o["mask"] is not None else o["box"]
                    for o in objects]
            row["box"] = max(row["box"], err(xyxy(got), xyxy(want)))
            row["box vs shard box"] = max(row["box vs shard box"], err(xyxy(got), xyxy([o["box"] for o in objects])))
    return row


def pycocotools(ds: Path, out: Path) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    run_export(ds, "coco", out)
    held = shards(ds)
    row = {"images": 0, "box": 0.0, "mask px": 0, "area": 0.0, "AP bbox": 1.0, "AP segm": 1.0, "rle": 0}
    for split in sorted({s for s, _ in held}):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(out / "annotations" / f"instances_{split}.json"))
        for image in gt.dataset["images"]:
            row["images"] += 1
            objects = held[(split, image["file_name"])]
            for a, o in zip(gt.loadAnns(gt.getAnnIds(imgIds=[image["id"]])), objects, strict=True):
                row["box"] = max(row["box"], err(xyxy(a["bbox"]), xyxy(o["box"])))
                if o["mask"] is not None:
                    row["mask px"] = max(row["mask px"], int((gt.annToMask(a) != o["mask"]).sum()))
                    row["area"] = max(row["area"], abs(a["area"] - float(o["mask"].sum())))
                    row["rle"] += isinstance(a["segmentation"], dict)
        for kind in ("bbox", "segm") if any(o["mask"] is not None for v in held.values() for o in v) else ("bbox",):
            with contextlib.redirect_stdout(io.StringIO()):
                ev = COCOeval(gt, gt.loadRes([{**a, "score": 1.0} for a in gt.dataset["annotations"]]), kind)
                ev.evaluate(), ev.accumulate(), ev.summarize()
            row[f"AP {kind}"] = min(row[f"AP {kind}"], float(ev.stats[0]))
    if not any(o["mask"] is not None for v in held.values() for o in v):
        for key in ("mask px", "area", "AP segm", "rle"):
            del row[key]
    return row


def supervision_coco(ds: Path, out: Path) -> dict:
    import supervision as sv

    run_export(ds, "coco", out)
    held = shards(ds)
    row = {"images": 0, "box": 0.0, "mask px": 0}
    for split in sorted({s for s, _ in held}):
        images = out / "images" / split
        loaded = sv.DetectionDataset.from_coco(str(images), str(out / "annotations" / f"instances_{split}.json"),
                                               force_masks=True)
        for path, _, detections in loaded:
            row["images"] += 1
            objects = held[(split, Path(path).relative_to(images.resolve()).as_posix())]
            row["box"] = max(row["box"], err(detections.xyxy, xyxy([o["box"] for o in objects])))
            for mask, o in zip(detections.mask, objects, strict=True):
                if o["mask"] is not None:
                    row["mask px"] = max(row["mask px"], int((mask != o["mask"].astype(bool)).sum()))
    return row


def supervision_yolo(ds: Path, out: Path, task: str) -> dict:
    import supervision as sv

    run_export(ds, "yolo", out, yolo_task=task)
    held = shards(ds)
    row = {"images": 0, "box": 0.0}
    for folder in sorted({p.parent for p in (out / "images").rglob("*.png")}):
        split = folder.relative_to(out / "images").parts[0]
        labels = out / "labels" / folder.relative_to(out / "images")
        for path, _, detections in sv.DetectionDataset.from_yolo(str(folder), str(labels), str(out / "data.yaml")):
            row["images"] += 1
            objects = held[(split, Path(path).resolve().relative_to((out / "images" / split).resolve()).as_posix())]
            want = [polygon_box(o["mask"], o["box"]) if task == "segment" else o["box"] for o in objects]
            row["box"] = max(row["box"], err(detections.xyxy, xyxy(want)))
    return row


def supervision_voc(ds: Path, out: Path) -> dict:
    import supervision as sv

    run_export(ds, "voc", out)
    held = {name.replace("/", "__").rsplit(".", 1)[0]: o for (_, name), o in shards(ds).items()}
    row = {"images": 0, "box": 0.0, "negative": 0}
    for path, _, detections in sv.DetectionDataset.from_pascal_voc(str(out / "JPEGImages"), str(out / "Annotations")):
        row["images"] += 1
        row["negative"] += int((detections.xyxy < 0).any())
        row["box"] = max(row["box"], err(detections.xyxy, xyxy([o["box"] for o in held[Path(path).stem]])))
    return row


def datumaro(ds: Path, out: Path, fmt: str) -> dict:
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset

    run_export(ds, "coco" if fmt == "coco_instances" else "voc", out)
    held = shards(ds)
    if fmt == "voc_detection":
        held = {(s, n.replace("/", "__").rsplit(".", 1)[0]): o for (s, n), o in held.items()}
    found = Dataset.import_from(str(out), fmt)
    row = {"images": len(found), "box": 0.0}
    for item in found:
        if fmt == "coco_instances":
            objects = held[(item.subset, Path(item.media.path).relative_to(out / "images" / item.subset).as_posix())]
            boxes = sorted((a for a in item.annotations if a.type == AnnotationType.bbox), key=lambda a: a.id)
            got = [[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes]
        else:  # datumaro keeps VOC's numbers: 1-based xmin
            objects = held[(item.subset, item.id)]
            boxes = [a for a in item.annotations if a.type == AnnotationType.bbox]
            got = [[b.x - 1, b.y - 1, b.x + b.w, b.y + b.h] for b in boxes]
        row["box"] = max(row["box"], err(got, xyxy([o["box"] for o in objects])))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=60, help="source scenes a dataset (3 rows each)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            data = {"masks": masked(root / "masked", n=args.scenes), "boxes": boxes_only(root / "boxes", n=args.scenes)}
        counts = {k: (len(shards(v)), sum(len(o) for o in shards(v).values())) for k, v in data.items()}
        n = iter(range(100))
        cases = [
            ("ultralytics", "yolo", "segment", "masks", lambda d, o: ultralytics(d, o, "segment")),
            ("ultralytics", "yolo", "detect", "masks", lambda d, o: ultralytics(d, o, "detect")),
            ("ultralytics", "yolo", "detect", "boxes", lambda d, o: ultralytics(d, o, "detect")),
            ("pycocotools", "coco", "segm + bbox", "masks", pycocotools),
            ("pycocotools", "coco", "bbox", "boxes", pycocotools),
            ("supervision from_coco(force_masks)", "coco", "masks", "masks", supervision_coco),
            ("supervision from_yolo", "yolo", "segment", "masks", lambda d, o: supervision_yolo(d, o, "segment")),
            ("supervision from_yolo", "yolo", "detect", "boxes", lambda d, o: supervision_yolo(d, o, "detect")),
            ("supervision from_pascal_voc", "voc", "detect", "masks", supervision_voc),
            ("supervision from_pascal_voc", "voc", "detect", "boxes", supervision_voc),
            ("datumaro coco_instances", "coco", "detect + masks", "masks",
             lambda d, o: datumaro(d, o, "coco_instances")),
            ("datumaro voc_detection", "voc", "detect", "masks", lambda d, o: datumaro(d, o, "voc_detection")),
        ]
        print(f"datasets: masks {counts['masks'][0]} images, {counts['masks'][1]} objects; "
              f"boxes {counts['boxes'][0]} images, {counts['boxes'][1]} objects\n")
        print("| client | format | task | dataset | images read | measured |")
        print("| --- | --- | --- | --- | --- | --- |")
        for client, fmt, task, which, measure in cases:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                row = measure(data[which], root / f"out{next(n)}" / fmt)
            images = row.pop("images")
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            print(f"| {client} | {fmt} | {task} | {which} | {images} of {counts[which][0]} | {shown} |")


if __name__ == "__main__":
    main()
