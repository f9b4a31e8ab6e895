"""Classification from a label file (Hugging Face imagefolder's convention): `labels.csv`,
`metadata.csv` or `metadata.jsonl` at the root or in a split folder, beside the images.

- A `file_name` column (the image's path relative to the label file's folder) and the class in
  `label`, else the first other column. A file that lacks either is unreadable: the images it
  would cover are skipped (or, when it is the only one, a SourceError).
- Each image belongs to the nearest label file above it; one it does not list is skipped, "not in
  labels.csv" (that file's name). Two label files in one folder: labels.csv, then metadata.csv,
  then metadata.jsonl is used, the others recorded as ignored.
- An empty label skips the image; a file listed twice with two labels skips it; a listed file
  that is not there is recorded. A JSON number names its class by its value (`1` and `1.0`: `1`).
  Class names sorted (numerically when every one is an integer:
  `2` before `10`). The split: a split folder above the image.
"""

from __future__ import annotations

import math

import csv
import io
import json
import posixpath

from augpipe.errors import SourceError
from augpipe.formats.base import Scan, SourceFile, is_image, split_of_folder
from augpipe.formats.common import finish, join, parent, read_files, split_of_path, text, usable
from augpipe.health.base import Problem

name = "labelfiles"
kinds = ("classification",)
NAMES = ("labels.csv", "metadata.csv", "metadata.jsonl")


def label_files(entries: list) -> list[str]:
    """The label file of each folder (the root, or a top-level split folder)."""
    out = {}
    for e in entries:
        folder, _, base = e.name.rpartition("/")
        if base in NAMES and (not folder or ("/" not in folder and split_of_folder(folder) is not None)):
            if folder not in out or NAMES.index(base) < NAMES.index(out[folder].rpartition("/")[2]):
                out[folder] = e.name
    return sorted(out.values())


def matches(entries: list) -> float | None:
    """1 when there is a label file (which images it lists is known only once it is read)."""
    return 1.0 if label_files(entries) else None


def read(store, entries: list, layout: str = "auto") -> Scan:
    skipped: list[tuple[str, str]] = []
    entries = usable(entries, skipped)
    names = label_files(entries)
    if not names:
        raise SourceError(f"{store.display()}: no label file ({', '.join(NAMES)})")
    for e in entries:
        folder, _, base = e.name.rpartition("/")
        if base in NAMES and e.name not in names and any(parent(n) == folder for n in names):
            used = next(n for n in names if parent(n) == folder)
            skipped.append((e.name, f"ignored: {used.rpartition('/')[2]} beside it is used"))
    raw = read_files(store, names)
    labels: dict[str, str | None] = {}  # image path → class (None: skipped, reason recorded)
    failed: dict[str, str] = {}
    problems: list[Problem] = []
    for name in names:
        data = raw[name]
        try:
            if isinstance(data, str):
                raise ValueError(data)
            rows = _rows(text(data, name), name)
        except ValueError as exc:
            failed[name] = str(exc)
            continue
        _collect(name, rows, labels, skipped, problems)
    if len(failed) == len(names):
        first = names[0]
        raise SourceError(f"{store.display(first)}: {failed[first]}")
    skipped += [(n, why) for n, why in failed.items()]
    problems += [Problem("annotation_unreadable", n, detail=why) for n, why in failed.items()]
    images = {e.name: e for e in entries if is_image(e.name)}
    for path in sorted(set(labels) - set(images)):
        if labels[path] is not None:
            skipped.append((path, f"listed in {_owner(path, names)} but not found"))
            problems.append(Problem("annotation_unreadable", path, _owner(path, names), "listed but not found"))
    files = _labelled(images, names, labels, failed, skipped, problems)
    classes = sorted({f.class_name for f in files}, key=_order)
    found = finish(store, files, skipped, classes, "classification", "labelfiles",
                   [(n, d) for n, d in raw.items() if isinstance(d, bytes)], problems=problems)
    return found


def _labelled(images: dict, names: list[str], labels: dict, failed: dict, skipped: list, problems: list) -> list:
    """The images with a label; each other one skipped with its reason."""
    files = []
    for path, e in images.items():
        owner = _owner(path, names)
        if owner is None:
            skipped.append((path, f"not in a label file ({', '.join(NAMES)} at the root or in a split folder)"))
            problems.append(Problem("no_labels", path, detail="not in a label file"))
        elif owner in failed:
            skipped.append((path, f"its label file {owner} cannot be read"))
        elif path not in labels:
            skipped.append((path, f"not in {owner}"))
            problems.append(Problem("no_labels", path, owner, "not listed"))
        elif labels[path] is not None:
            files.append(SourceFile(path, split_of_path(path), labels[path], e.size, e.mtime_ns))
    return files


def _owner(path: str, names: list[str]) -> str | None:
    """The nearest label file above a path."""
    best = None
    for n in names:
        folder = parent(n)
        if not folder or path.startswith(folder + "/"):
            if best is None or len(folder) > len(parent(best)):
                best = n
    return best


def _rows(content: str, name: str) -> list[tuple[int, str, object]]:
    """(line, file_name, label) for each row."""
    out = []
    if name.endswith(".jsonl"):
        key = None
        for lineno, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {lineno}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise ValueError(f"line {lineno}: not valid JSON (nested too deeply)") from None
            except ValueError as exc:  # an integer beyond Python's digit limit
                raise ValueError(f"line {lineno}: not valid JSON ({str(exc).splitlines()[0][:80]})") from None
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                raise ValueError(f"line {lineno}: no \"file_name\"")
            if key is None:
                key = "label" if "label" in row else next((k for k in row if k != "file_name"), None)
                if key is None:
                    raise ValueError(f"line {lineno}: no label (a \"label\" key, or another beside \"file_name\")")
            out.append((lineno, row["file_name"], row.get(key)))
        return out
    reader = csv.reader(io.StringIO(content))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError("empty (expected a header: file_name,label)") from None
    except csv.Error as exc:
        raise ValueError(f"not valid CSV ({exc})") from None
    if "file_name" not in header:
        raise ValueError(f"no file_name column (the header is {','.join(header)[:60]})")
    fcol = header.index("file_name")
    lcol = header.index("label") if "label" in header else next((i for i in range(len(header)) if i != fcol), None)
    if lcol is None:
        raise ValueError("no label column beside file_name")
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            out.append((reader.line_num, row[fcol].strip() if fcol < len(row) else "",
                        row[lcol].strip() if lcol < len(row) else ""))
    except csv.Error as exc:
        raise ValueError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return out


def _collect(name: str, rows: list, labels: dict, skipped: list, problems: list) -> None:
    base = name.rpartition("/")[2]
    folder = parent(name)
    first: dict[str, tuple[int, str]] = {}  # image path → (line, label) where it was first listed
    for lineno, file_name, label in rows:
        rel = file_name.replace("\\", "/")
        while rel.startswith("./"):
            rel = rel[2:]
        path = posixpath.normpath(join(folder, rel)) if rel else ""
        if not rel:
            skipped.append((name, f"line {lineno}: no file_name"))
            problems.append(Problem("annotation_unreadable", name, f"line {lineno}", "no file_name"))
            continue
        value = None if label is None or isinstance(label, (dict, list)) else _name(label)
        if not value:
            labels[path] = None
            why = " (not a single value)" if isinstance(label, (dict, list)) else ""
            skipped.append((path, f"no label in {base}{why}"))
            problems.append(Problem("no_labels", path, f"{name} line {lineno}", f"no label{why}"))
            continue
        seen = first.setdefault(path, (lineno, value))
        if seen[1] != value:
            problems.append(Problem("conflicting_labels", path, f"{name} lines {seen[0]} and {lineno}",
                                    f"listed as {seen[1]} and as {value}"))
        if path in labels and labels[path] != value:
            if labels[path] is not None:
                skipped.append((path, f"listed twice in {base}, as {labels[path]} and {value}"))
            labels[path] = None
            continue
        labels[path] = value


def _name(label) -> str:
    """A label as a class name: a JSON number by its value (1 and 1.0 are one class, `1`)."""
    if isinstance(label, float) and not math.isfinite(label):
        return ""  # NaN or infinity names no class: no label
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label).strip()


def _order(name: str):
    """Integers in numeric order, before anything else (which sorts as text)."""
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)
