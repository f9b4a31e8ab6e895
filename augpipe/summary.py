"""The one-screen summary at the end of a run."""

from __future__ import annotations

SHOW_SKIPPED = 5
SHOW_CLASSES = 8


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _engine(e: dict, timing: dict) -> str:
    workers = e.get("workers", timing.get("workers", 1))
    text = f"{e.get('name', 'local')}: {workers} worker{'' if workers == 1 else 's'}"
    if e.get("asked", workers) > workers:  # `-w 2` and one shard to write: say why one ran
        text += f" (of {e['asked']} asked: a worker a shard, {workers} to write)"
    if e.get("name") == "ray":
        text += f" on {e.get('nodes', 1)} node{'' if e.get('nodes', 1) == 1 else 's'}, {e.get('cpus', 0):g} CPUs"
    retried = e.get("retried_tasks", 0)
    return text + (f", {retried} task{'' if retried == 1 else 's'} retried" if retried else "")


def _dropped_lines(dropped_by: dict) -> list[str]:
    """Objects the recipe dropped, a line a reason, its classes the most dropped first."""
    total = sum(n for by_class in dropped_by.values() for n in by_class.values())
    if not total:
        return []
    lines = [f"  dropped     {total:,} object{'' if total == 1 else 's'} (all under dropped_by in the manifest)"]
    for reason, by_class in dropped_by.items():
        top = sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{k} {v:,}" for k, v in top[:4]) + (", …" if len(top) > 4 else "")
        lines.append(f"                {reason}: {sum(by_class.values()):,} ({shown})")
    return lines
# what a manifest's by_class counts, by its "counted"
COUNTED = {"rows": "rows", "objects": "objects", "images": "rows holding the class"}


def _class_lines(train: dict, counted: str, classes: list[str]) -> list[str]:
    """The training split's classes in the dataset's class order (as `inspect` gives them): what
    by_class counts, and where that is objects, the rows holding each class."""
    rank = {name: k for k, name in enumerate(classes)}
    lines = []
    for key, what in (("by_class", COUNTED.get(counted, counted)), ("rows_by_class", "rows holding the class")):
        if key not in train:
            continue
        top = sorted(train[key].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
        shown = ", ".join(f"{k} {v:,}" for k, v in top[:SHOW_CLASSES])
        more = f", … {len(top) - SHOW_CLASSES} more" if len(top) > SHOW_CLASSES else ""
        lines.append(f"  {'' if lines else 'classes':<11} {shown}{more}" + (f"  (train {what})" if top else ""))
    return lines


def _balance(b: dict, classes: list[str], counted: str) -> list[str]:
    """--balance by repeat factors: each class's factor, and its objects before -> after, the rarest
    classes first."""
    before, after, factor = b["objects_before"], b["objects_after"], b["repeat_factor"]
    present = [c for c in classes if before.get(c) or after.get(c)]  # not a background class
    shown = sorted(present, key=lambda c: before.get(c, 0))[:SHOW_CLASSES]
    more = f", … {len(present) - SHOW_CLASSES} more" if len(present) > SHOW_CLASSES else ""
    if not shown:
        return [f"  balance     repeat factors, t {b['threshold']:.3g}: no class in the training images, nothing "
                "repeated"]
    return [
        f"  balance     repeat factors, t {b['threshold']:.3g}: "
        + ", ".join(f"{c} ×{factor.get(c, 1):.2f}" for c in shown) + more,
        f"  {counted:<11} " + ", ".join(f"{c} {before.get(c, 0):,} -> {after.get(c, 0):,}" for c in shown) + more
        + "  (train sources -> rows)",
    ]


def expand_summary(m: dict) -> list[str]:
    counts = m["counts"]
    timing = m["timing"]
    inputs = sum(c["sources"] for c in counts.values())
    lines = [
        f"augpipe expand: {m['source']} -> {m.get('out', '')}",
        f"  recipe      {m['recipe']['name']} ({m['recipe']['sha256'][:12]}), seed {m['seed']}, "
        f"copies {m['options']['copies']}",
    ]
    conv = m.get("conversions") or {}
    converted = sum(conv.values())
    note = f"; {converted} converted to 8-bit RGB ({', '.join(f'{k}: {v}' for k, v in conv.items())})" if conv else ""
    n_classes = len(m["classes"])
    kind = _count(n_classes, "class", "classes") if m["labelled"] else "unlabelled"
    n_skipped = m.get("skipped_count", len(m["skipped"]))
    # what was skipped is counted apart: not every entry skipped is an image (a folder, a link to one)
    left_out = f" (and {n_skipped:,} {'entry' if n_skipped == 1 else 'entries'} skipped, below)" if n_skipped else ""
    lines.append(f"  inputs      {_count(inputs, 'image')}{left_out}, {kind}{note}")
    for split, c in counts.items():
        extra = f" ({_count(c['originals'], 'original')} + {c['augmented']:,} augmented)" if c["augmented"] else ""
        lines.append(f"  {split:<11} {_count(c['rows'], 'row')} from {_count(c['sources'], 'image')}{extra}")
    if m["labelled"]:
        lines += _class_lines(counts.get("train", {}), m.get("counted", "rows"), m["classes"])
    if m.get("balance"):
        lines += _balance(m["balance"], m["classes"], m.get("counted", "objects"))
    skipped = m["skipped"]
    where = m.get("skipped_file", "_augpipe.json")
    lines.append(f"  skipped     {n_skipped:,}" + (f" (all listed in {where})" if skipped else ""))
    for s in skipped[:SHOW_SKIPPED]:
        lines.append(f"                {s['path']}: {s['reason']}")
    if n_skipped > SHOW_SKIPPED:
        lines.append(f"                … {n_skipped - SHOW_SKIPPED:,} more")
    failed = m.get("failed_copies") or []
    if failed:
        lines.append(f"  failed      {len(failed):,} augmented copies could not be made (their originals are kept)")
        lines += [f"                {f['path']} copy {f['copy']}: {f['reason']}" for f in failed[:3]]
    lines += _dropped_lines(m.get("dropped_by") or {})
    for warning in m.get("warnings") or []:
        lines.append(f"  warning     {warning}")
    n_bytes = sum(s["bytes"] for s in m["shards"])
    lines.append(f"  shards      {_count(len(m['shards']), 'file')}, {_size(n_bytes)}")
    if m.get("mended"):
        lines.append(f"  mended      {m['mended']}")
    if m.get("up_to_date"):
        lines.append("  time        nothing to do: this output is complete and up to date")
    else:
        resumed = f", {_count(timing['shards_resumed'], 'shard')} kept from an earlier run" if timing.get("shards_resumed") else ""
        lines.append(
            f"  time        {timing['seconds']:.1f} s, {timing['images_per_second']:,.0f} images/s out while "
            f"processing{resumed}"
        )
        lines.append(f"  engine      {_engine(m.get('engine') or {}, timing)}")
    lines.append(f"  manifest    {m.get('out', '.').rstrip('/')}/_augpipe.json")
    return lines


def _count(n: int, one: str, many: str | None = None) -> str:
    """`1 row`, `2 rows`, `1 class`, `3 classes`."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"
