"""Start-up: how long the commands that only talk take, and the 64 px expand as a whole command.

    pip install -e '.[bench]' && python bench/startup.py [--runs 7] [--images 2000] [--no-expand]

- `augpipe --help`, `augpipe recipes`, `augpipe --version` and `augpipe expand --help`, run as the
  installed console script and as `python -m augpipe`, against `python -c pass` in the same run
  (wall time, the median of --runs; the target is under 0.3 s);
- `augpipe expand` at 64×64 px over --images inputs, 2 copies each, 2 workers (bench/expand.py's
  dataset, recipe and ceiling): images out per second, the whole command (Python's start, the
  imports, the recipe, the scan) and by its own clock (`process_seconds`), against the ceiling
  measured in the same run (medians of --repeat); and the bound on any whole command: the
  ceiling's work after Python's start and albumentations' import, with nothing else; and the
  same with the ceiling reading its files and writing Parquet (bench/expand.py's `files_ceiling`):
  the most a command that reads and writes files could reach.

augpipe's modules are compiled to bytecode first, as an install leaves them (`as_installed`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# what a worker needs before its first image, as augpipe's command line loads it (albumentations,
# numpy, OpenCV, pydantic, and augpipe's recipe module and local engine, about 0.08 s of it)
LOADING = ("from augpipe.recipe import import_albumentations, lean_import; import augpipe.engines.local; "
           "lean_import(); import_albumentations()")
COMMANDS = (["--help"], ["recipes"], ["--version"], ["expand", "--help"])


def wall(cmd: list[str], runs: int) -> float:
    """Median wall seconds of `cmd` (its output thrown away), run in the tree of the augpipe this
    Python imports: `python -m` looks in the working folder first."""
    from expand import augpipe_tree

    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=augpipe_tree())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def talking_rows(runs: int) -> list[tuple[str, float]]:
    script = Path(sys.executable).parent / "augpipe"
    rows = [("python -c pass", wall([sys.executable, "-c", "pass"], runs))]
    for args in COMMANDS:
        if script.exists():
            rows.append((f"augpipe {' '.join(args)}", wall([str(script), *args], runs)))
        rows.append((f"python -m augpipe {' '.join(args)}", wall([sys.executable, "-m", "augpipe", *args], runs)))
    return rows


def expand_rows(work: Path, images: int, repeat: int) -> list[tuple[str, float, str]]:
    from expand import RECIPE, all_files, augpipe_expand, ceiling, files_ceiling, files_rows, make_dataset

    recipe = work / "bench.yaml"
    recipe.write_text(RECIPE)
    src = make_dataset(work / "src64", images, 64)
    files = all_files(src)
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        runs.setdefault("ceiling", []).append(ceiling(files, 2))
        runs.setdefault("files", []).append(files_ceiling(files, 2, work / "files-ceiling"))
        whole, own, _ = augpipe_expand(src, work / "out64", 2, recipe)
        runs.setdefault("whole", []).append(whole)
        runs.setdefault("own", []).append(own)
    m = {k: statistics.median(v) for k, v in runs.items()}
    # the most any command can reach: Python's start and albumentations' import, then the ceiling's work
    loading = wall([sys.executable, "-c", LOADING], 5)
    rows = images * 2
    bound = rows / (rows / m["ceiling"] + loading)
    return [("ceiling, 2 processes", m["ceiling"], "1.00"),
            (f"bound: ceiling + {loading:.2f} s start and imports", bound,
             f"{bound / m['ceiling']:.2f}, the most any whole command reaches"),
            ("augpipe expand -w 2 (own clock, processing)", m["own"], f"{m['own'] / m['ceiling']:.2f}"),
            ("augpipe expand -w 2 (whole command)", m["whole"], f"{m['whole'] / m['ceiling']:.2f}"),
            ("whole command / the bound", 0.0, f"{m['whole'] / bound:.2f}"),
            *((name, value or 0.0, ratio) for name, value, ratio in
              files_rows(m["files"], m["ceiling"], loading, rows, m["own"], m["whole"])),
            (f"whole command / ceiling, each of {repeat} runs", 0.0,
             ", ".join(f"{w / c:.2f}" for w, c in zip(runs["whole"], runs["ceiling"])))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each talking command; medians")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the ceiling and expand; medians")
    parser.add_argument("--no-expand", action="store_true", help="the talking commands only")
    args = parser.parse_args()
    from expand import as_installed, bytecode_note

    as_installed()
    if note := bytecode_note():
        print(note)
    print(f"augpipe start-up: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"\n  {'command':<40} {'seconds':>8}  {'less python -c pass':>20}")
    rows = talking_rows(args.runs)
    base = rows[0][1]
    for name, seconds in rows:
        print(f"  {name:<40} {seconds:>8.3f}  {seconds - base:>20.3f}")
    if args.no_expand:
        return
    work = Path(tempfile.mkdtemp(prefix="augpipe-startup-"))
    try:
        print(f"\n64×64 px, {args.images} inputs, 2 copies, 2 workers (medians of {args.repeat})")
        print(f"  {'what':<44} {'images/s':>10}  vs ceiling")
        for name, value, ratio in expand_rows(work, args.images, args.repeat):
            print(f"  {name:<44} {value:>10,.0f}  {ratio}" if value else f"  {name:<44} {'':>10}  {ratio}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
