"""`inspect`: what an expanded dataset holds and how it was made, or what a source folder holds.

Both return plain facts (dicts, for --json) and problems; the CLI formats them.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from augpipe.errors import SkipInput, SourceError

SHOWN = 10  # problems, duplicates or skipped files shown in the text report


def _spread(values: list[int]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median_low(values), "max": max(values)}


# ---------------------------------------------------------------- an expanded dataset

def inspect_output(out: str | Path, verify: bool = False) -> dict:
    import pyarrow.parquet as pq

    from augpipe.manifest import read_manifest
    from augpipe.plan import SPLITS

    out = Path(out)
    m = read_manifest(out)
    if m is None:
        raise SourceError(f"{out} has no readable augpipe.json: not an expanded dataset")
    widths, heights = [], []
    for shard in m["shards"]:
        path = out / shard["name"]
        try:
            t = pq.read_table(path, columns=["width", "height"])
        except Exception:  # reported by --verify; the summary shows what it can read
            continue
        widths += t.column("width").to_pylist()
        heights += t.column("height").to_pylist()
    facts = {
        "kind": "expanded dataset",
        "path": str(out),
        "augpipe_version": m["augpipe_version"],
        "recipe": {"name": m["recipe"]["name"], "sha256": m["recipe"]["sha256"]},
        "seed": m["seed"],
        "source": m["source"],
        "classes": m["classes"],
        "splits": {s: m["counts"][s] for s in SPLITS if s in m["counts"]},
        "shards": len(m["shards"]),
        "bytes": sum(s["bytes"] for s in m["shards"]),
        "width": _spread(widths),
        "height": _spread(heights),
        "skipped": m["skipped"],
    }
    if verify:
        facts["problems"] = verify_output(out, m)
    return facts


def verify_output(out: Path, m: dict) -> list[str]:
    """Every shard re-read: presence, checksum, row count, images, labels, augmented rows."""
    from augpipe.plan import SPLITS
    from augpipe.shards import file_sha256, shard_pattern

    problems = []
    listed = {s["name"] for s in m["shards"]}
    for split in SPLITS:
        for extra in sorted(out.glob(shard_pattern(split))):
            if extra.name not in listed:
                problems.append(f"{extra.name}: extra shard, not in augpipe.json")
    for shard in m["shards"]:
        path = out / shard["name"]
        if not path.is_file():
            problems.append(f"{shard['name']}: missing")
            continue
        digest, _ = file_sha256(path)
        if digest != shard["sha256"]:
            problems.append(f"{shard['name']}: checksum mismatch (sha256 {digest[:12]}, manifest {shard['sha256'][:12]})")
        problems += _verify_rows(path, shard, len(m["classes"]), m["labelled"])
    return problems


def _verify_rows(path: Path, shard: dict, n_classes: int, labelled: bool) -> list[str]:
    import cv2
    import numpy as np
    import pyarrow.parquet as pq

    name = shard["name"]
    try:
        reader = pq.ParquetFile(path)
        rows = reader.metadata.num_rows
    except Exception as exc:
        return [f"{name}: cannot be read as Parquet ({type(exc).__name__}: {str(exc)[:80]})"]
    problems = []
    if rows != shard["rows"]:
        problems.append(f"{name}: {rows} rows, augpipe.json says {shard['rows']}")
    index = 0
    try:
        for batch in reader.iter_batches(batch_size=256, columns=["image", "label", "copy", "source"]):
            for row in batch.to_pylist():
                data = (row["image"] or {}).get("bytes") or b""
                if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
                    problems.append(f"{name} row {index} ({row['source']}): image does not decode")
                label = row["label"]
                if labelled and (label is None or not 0 <= label < n_classes):
                    problems.append(f"{name} row {index} ({row['source']}): label {label} outside the {n_classes} classes")
                if shard["split"] != "train" and row["copy"] != 0:
                    problems.append(f"{name} row {index} ({row['source']}): augmented row (copy {row['copy']}) "
                                    f"in {shard['split']}")
                index += 1
    except Exception as exc:
        problems.append(f"{name}: unreadable after row {index} ({type(exc).__name__}: {str(exc)[:80]})")
    return problems


def output_report(f: dict) -> list[str]:
    lines = [
        f"{f['path']}: expanded dataset, augpipe {f['augpipe_version']}",
        f"  recipe    {f['recipe']['name']} (sha256 {f['recipe']['sha256'][:12]}), seed {f['seed']}",
        f"  source    {f['source']}",
    ]
    for split, c in f["splits"].items():
        lines.append(f"  {split:<9} {c['rows']:,} rows: {c['originals']:,} originals, {c['augmented']:,} augmented")
    size = f"{f['bytes'] / 1e6:.1f} MB"
    lines.append(f"  shards    {f['shards']} files, {size}")
    lines += _sizes_line(f)
    lines += _class_chart(f["classes"], f["splits"])
    lines.append(f"  skipped   {len(f['skipped'])} inputs")
    lines += [f"    {s['path']}: {s['reason']}" for s in f["skipped"][:SHOWN]]
    if "problems" in f:
        lines += _problem_lines(f["problems"], "verify: every shard re-read, checksums and images checked")
    return lines


def _class_chart(classes: list[str], splits: dict) -> list[str]:
    if not classes:
        return ["  classes   none (unlabelled)"]
    names = list(splits)
    counts = {c: [splits[s]["by_class"].get(c, 0) for s in names] for c in classes}
    top = max((v[0] for v in counts.values()), default=0) or 1
    width = max(len(c) for c in classes)
    lines = [f"  classes   {len(classes)}   ({' / '.join(names)})"]
    for c in classes:
        lines.append(f"    {c:<{width}}  {_bar(counts[c][0], top)} {' / '.join(f'{n:,}' for n in counts[c])}")
    return lines


def _bar(n: int, top: int, width: int = 24) -> str:
    return ("#" * max(1, round(width * n / top)) if n else "").ljust(width)


def _sizes_line(f: dict) -> list[str]:
    if not f["width"]:
        return []
    w, h = f["width"], f["height"]
    return [f"  sizes     width {w['min']}/{w['median']}/{w['max']}, height {h['min']}/{h['median']}/{h['max']}"
            " (min/median/max)"]


def _problem_lines(problems: list[str], ok: str) -> list[str]:
    if not problems:
        return [f"  {ok}: all is well"]
    lines = [f"  problems  {len(problems)}"]
    lines += [f"    {p}" for p in problems[: SHOWN * 5]]
    if len(problems) > SHOWN * 5:
        lines.append(f"    ... {len(problems) - SHOWN * 5} more (--json lists all)")
    return lines


# ---------------------------------------------------------------- a source folder

def inspect_source(root: str | Path, max_pixels: int = 100_000_000) -> dict:
    """Classes, counts, formats, sizes, duplicate files and the files `expand` would skip."""
    from augpipe.decode import decode
    from augpipe.headers import read_header
    from augpipe.sources import scan

    found = scan(root)
    counts = Counter(f.class_name for f in found.files)
    formats: Counter = Counter()
    widths, heights = [], []
    by_hash = defaultdict(list)
    skipped = [{"path": p, "reason": r} for p, r in found.skipped]
    for f in found.files:
        try:
            data = (Path(root) / f.relpath).read_bytes()
            by_hash[hashlib.sha256(data).hexdigest()].append(f.relpath)
            head = read_header(data) if data else None
            decode(data, max_pixels)  # what expand would do: catches truncated and corrupt files
        except SkipInput as exc:
            skipped.append({"path": f.relpath, "reason": exc.reason})
            continue
        except OSError as exc:
            skipped.append({"path": f.relpath, "reason": f"cannot read: {exc.strerror or exc}"})
            continue
        formats[head.format] += 1
        widths.append(head.width)
        heights.append(head.height)
    sizes = [n for n in counts.values() if n]
    return {
        "kind": "source folder",
        "path": str(root),
        "labelled": found.labelled,
        "split_folders": found.split_folders,
        "images": len(found.files),
        "classes": {str(k): v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))},
        "imbalance": round(max(sizes) / min(sizes), 2) if sizes else None,
        "formats": dict(formats.most_common()),
        "width": _spread(widths),
        "height": _spread(heights),
        "duplicates": [sorted(paths) for paths in by_hash.values() if len(paths) > 1],
        "skipped": sorted(skipped, key=lambda s: s["path"]),
    }


def source_report(f: dict) -> list[str]:
    layout = "split folders (train/val/test)" if f["split_folders"] else "one folder a class"
    lines = [f"{f['path']}: source folder, {f['images']:,} image files, {layout}"]
    if f["labelled"]:
        top = max(f["classes"].values())
        width = max(len(c) for c in f["classes"])
        lines.append(f"  classes   {len(f['classes'])}, imbalance {f['imbalance']} (largest / smallest)")
        for c, n in f["classes"].items():
            lines.append(f"    {c:<{width}}  {_bar(n, top)} {n:,}")
    else:
        lines.append("  classes   none (no class folders: unlabelled)")
    lines.append("  formats   " + ", ".join(f"{k} {v:,}" for k, v in f["formats"].items()))
    lines += _sizes_line(f)
    dups = f["duplicates"]
    lines.append(f"  duplicates {len(dups)} groups of identical files")
    lines += [f"    {' = '.join(group)}" for group in dups[:SHOWN]]
    lines.append(f"  will be skipped {len(f['skipped'])}")
    lines += [f"    {s['path']}: {s['reason']}" for s in f["skipped"][:SHOWN * 5]]
    return lines
