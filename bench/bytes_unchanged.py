"""Whether two trees of augpipe write the same shards: expand with every bundled recipe on a
classification folder, COCO scenes with instance masks, YOLO scenes and a mask folder, once with
each tree (its CLI in a subprocess), and compare every shard's sha256.

    python bench/bytes_unchanged.py /path/to/other/checkout [--this .] [--decoded]

Exit status 0 when every shard is byte-identical. `--decoded`: where shards differ, their rows
are compared with each mask decoded (instance masks' pixels; a segmentation mask's class indices
and palette: augpipe's reader, PIL and OpenCV agree, tested), every other value as it is: the
same rows with masks stored another way pass."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.conftest import make_folder, make_scenes  # noqa: E402

RECIPES = sorted(p.stem for p in (HERE / "augpipe" / "recipes").glob("*.yaml"))


def sources(root: Path) -> dict[str, Path]:
    return {
        "folder": make_folder(root / "folder", per_class=6, size=40),
        "coco": make_scenes(root / "coco", n=8, fmt="coco"),
        "yolo": make_scenes(root / "yolo", n=8, fmt="yolo"),
        "masks": make_scenes(root / "masks", n=8, fmt="masks"),
    }


def expand(tree: Path, source: Path, recipe: str, out: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "augpipe", "expand", str(source), "--out", str(out), "--recipe", recipe,
           "--copies", "2", "--seed", "7", "--workers", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        return {"(failed)": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.parquet"))}


def decoded_rows(out: Path) -> list[dict]:
    """Every row of a run's shards, in order, each mask as its pixels' bytes."""
    import pyarrow.parquet as pq

    from augpipe.targets.masks import read_instance_mask, read_mask

    rows = []
    for shard in sorted(out.rglob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            masks = (row.get("objects") or {}).get("mask")
            if masks is not None:
                row["objects"]["mask"] = [read_instance_mask(m["bytes"]).tobytes() for m in masks]
            if row.get("annotation"):
                mask, palette = read_mask(row["annotation"]["bytes"], "annotation")
                row["annotation"] = (mask.tobytes(), mask.shape, palette, row["annotation"]["path"])
            rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("other", type=Path)
    parser.add_argument("--this", type=Path, default=HERE)
    parser.add_argument("--decoded", action="store_true", help="compare differing shards' rows, masks decoded")
    args = parser.parse_args()
    same = differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, source in sources(root / "src").items():
            for recipe in RECIPES:
                a = expand(args.this, source, recipe, root / "a" / name / recipe)
                b = expand(args.other.resolve(), source, recipe, root / "b" / name / recipe)
                ok = a == b and "(failed)" not in a
                word = "same" if ok else "DIFFER"
                if not ok and args.decoded and "(failed)" not in a and "(failed)" not in b and a.keys() == b.keys():
                    ok = decoded_rows(root / "a" / name / recipe) == decoded_rows(root / "b" / name / recipe)
                    word = "rows" if ok else word
                same, differ = same + ok, differ + (not ok)
                print(f"{word:6} {name:7} {recipe:10} {len(a)} shards"
                      + ("" if ok else f"  this={a} other={b}"))
    print(f"{same} runs the same ({'bytes, or rows with masks decoded' if args.decoded else 'bytes'}), "
          f"{differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
