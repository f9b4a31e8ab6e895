"""A Mosaic recipe's expand against the plain detection recipe's, in one run.

    pip install -e '.[bench]' && python bench/mix_speed.py [--images 600] [--size 320] [--repeat 3]

The same COCO folder for both (bench/targets.py's: photos cut from scikit-image's pictures, 5
boxes an image on average), 2 workers: the bundled `detection` recipe (4 copies: flip, shift and
scale, colour jitter; PNG) and the same recipe with `Mosaic` first at p=1 (`target_size` and
`cell_shape` the images' size: every augmented row reads and decodes three donors). Images out a
second by expand's own clock for the shard tasks, the two runs taken in turn `--repeat` times;
the ratio of the medians, and each turn's own ratio. Target (issue 17): the Mosaic recipe at least 0.5 of the plain one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rate(source: Path, out: Path, recipe) -> tuple[float, float]:
    """(images out a second by expand's own clock, seconds for the whole call)."""
    from augpipe import ExpandOptions, expand

    shutil.rmtree(out, ignore_errors=True)  # a finished output of the same run would be "up to date"
    started = time.perf_counter()
    m = expand(source, recipe, out, ExpandOptions(workers=2, progress=False))
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return sum(c["rows"] for c in m["counts"].values()) / m["timing"]["process_seconds"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from detection_lift import BASE, write_recipe
    from expand import make_dataset
    from targets import add_targets

    work = Path(tempfile.mkdtemp(prefix="augpipe-bench-mix-"))
    try:
        coco = add_targets(make_dataset(work / "src", args.images, args.size), work)["detection"]
        mosaic = {"p": 1, "target_size": [args.size, args.size], "cell_shape": [args.size, args.size]}
        recipes = {BASE: BASE, f"{BASE} + Mosaic p=1": write_recipe(work, "mosaic", (("Mosaic", mosaic, 0),))}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in recipes}
        for _ in range(args.repeat):
            for name, recipe in recipes.items():
                runs[name].append(rate(coco, work / "out", recipe))
        print(f"{args.images:,} inputs at {args.size} px, 5 boxes an image, 4 copies, 2 workers; images/s by "
              f"expand's own clock (shard tasks), median of {args.repeat} taken in turn")
        base = statistics.median(r for r, _ in runs[BASE])
        for name, found in runs.items():
            r = statistics.median(x for x, _ in found)
            each = ", ".join(f"{x:,.0f}" for x, _ in found)
            whole = statistics.median(s for _, s in found)
            print(f"  {name:<22} {r:7,.0f}   {r / base:.2f}  (runs: {each}; whole call {whole:.1f} s)")
        turns = [m / p for (p, _), (m, _) in zip(*runs.values())]
        print(f"each turn's ratio: {', '.join(f'{t:.2f}' for t in turns)}; target: the Mosaic recipe at least 0.5 "
              f"of the plain one")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
