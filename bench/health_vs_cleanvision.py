"""augpipe's image health checks against cleanvision's, on the same planted image set.

Writes N clean varied pictures (tests/health/planted_images.py: gradients, clouds, stripes, textured
shapes, a sixth objects on white; PNG and JPEG, 200-300 px) and K of each problem, each made from a
fresh picture with a random severity: blurry (Gaussian sigma 1-3 px), dark and bright (5-25% of the
light, or of the distance to white, kept), low-information (one colour, a faint gradient, sensor
noise), exact duplicates (pairs: the same file, or the same pixels as PNG and TIFF: cleanvision reads no BMP) and near
duplicates (pairs: resized 0.5-1.5x and re-encoded as JPEG at quality 60-95; a third also cropped
by 3%, a third also 6 levels brighter). Then runs cleanvision's Imagelab (defaults) and augpipe's
measure and judge on the folder and prints, per issue type, the recall on the planted files and
the clean files flagged.

    python -m venv /tmp/cv && /tmp/cv/bin/pip install cleanvision opencv-python-headless
    PYTHONPATH=. /tmp/cv/bin/python bench/health_vs_cleanvision.py [--clean 300] [--per-type 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "health")]

import planted_images as P  # noqa: E402
from augpipe.decode import decode  # noqa: E402
from augpipe.health.images import judge, measure  # noqa: E402

TYPES = ("blurry", "dark", "bright", "low_information", "exact_duplicates", "near_duplicates")
CLEANVISION = {"bright": "light"}  # its names, where they differ


def write_set(folder: Path, clean: int, per_type: int, seed: int) -> dict[str, list]:
    """Writes the pictures; {type: its planted files (pairs, for duplicates)}, with "clean"."""
    rng = np.random.default_rng(seed)
    planted: dict[str, list] = {name: [] for name in ("clean", *TYPES)}

    def save(name: str, image: np.ndarray, fmt: str = "png", **options) -> str:
        (folder / f"{name}.{fmt}").write_bytes(P.encode(image, fmt, **options))
        return f"{name}.{fmt}"

    for path, _, data in P.clean_files(rng, clean, None):
        (folder / Path(path).name).write_bytes(data)
        planted["clean"].append(Path(path).name)
    for i in range(per_type):
        picture = P.varied(rng, *P.clean_size(rng))
        planted["blurry"].append(save(f"blurry_{i}", cv2.GaussianBlur(picture, (0, 0), rng.uniform(1, 3))))
        planted["dark"].append(save(f"dark_{i}", P.dark(P.varied(rng, 240, 180), rng.uniform(0.05, 0.25))))
        planted["bright"].append(save(f"bright_{i}", P.bright(P.varied(rng, 240, 180), rng.uniform(0.05, 0.25))))
        planted["low_information"].append(save(f"flat_{i}", P.low_information(rng, *P.clean_size(rng))))
        planted["exact_duplicates"].append(_exact_pair(save, rng, i))
        planted["near_duplicates"].append(_near_pair(save, rng, i))
    return planted


def _exact_pair(save, rng, i: int) -> tuple[str, str]:
    picture = P.varied(rng, *P.clean_size(rng))
    return save(f"same_{i}_a", picture), save(f"same_{i}_b", picture, "png" if i % 2 else "tiff")


def _near_pair(save, rng, i: int) -> tuple[str, str]:
    picture = P.varied(rng, *P.clean_size(rng))
    copy = P.resized(picture, rng.uniform(0.5, 1.5))
    if i % 3 == 1:
        h, w = copy.shape[:2]
        copy = copy[round(h * 0.015):h - round(h * 0.015), round(w * 0.015):w - round(w * 0.015)]
    elif i % 3 == 2:
        copy = np.clip(copy.astype(np.int16) + 6, 0, 255).astype(np.uint8)
    return save(f"look_{i}_a", picture), save(f"look_{i}_b", copy, "jpg", quality=int(rng.integers(60, 96)))


def run_augpipe(folder: Path) -> tuple[dict[str, set], list[set], list[set], float]:
    """({type: flagged files}, exact groups, near groups, seconds per image for measure alone)."""
    files = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    decoded = [decode(data, 10**8).rgb for _, data in files]
    start = time.perf_counter()
    stats = [measure(path, None, data, rgb) for (path, data), rgb in zip(files, decoded)]
    per_image = (time.perf_counter() - start) / len(files)
    problems = judge(stats)
    flagged: dict[str, set] = {t: set() for t in TYPES}
    groups: dict[str, list[set]] = {"exact_duplicate": [], "near_duplicate": []}
    names = {"low_information": "low_information", "blurry": "blurry", "dark": "dark", "bright": "bright"}
    for p in problems:
        if p.check in names:
            flagged[names[p.check]].add(p.path)
        elif p.check in groups:
            groups[p.check].append({p.path, *p.related})
    return flagged, groups["exact_duplicate"], groups["near_duplicate"], per_image


def large_timing(seed: int, count: int = 10) -> float:
    """Seconds per image for measure on 1920×1080 JPEG pictures, decoded beforehand."""
    rng = np.random.default_rng(seed)
    files = [P.encode(cv2.resize(P.varied(rng, 480, 270), (1920, 1080)), "jpg") for _ in range(count)]
    decoded = [decode(data, 10**8).rgb for data in files]
    start = time.perf_counter()
    for data, rgb in zip(files, decoded):
        measure("large.jpg", None, data, rgb)
    return (time.perf_counter() - start) / count


def run_cleanvision(folder: Path) -> tuple[dict[str, set], list[set], list[set]]:
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(folder))
    lab.find_issues({CLEANVISION.get(t, t): {} for t in TYPES}, n_jobs=1, verbose=False)
    flagged = {t: {Path(p).name for p in lab.issues.index[lab.issues[f"is_{CLEANVISION.get(t, t)}_issue"]]}
               for t in TYPES}
    sets = {t: [{Path(p).name for p in s} for s in lab.info[t]["sets"]] for t in ("exact_duplicates", "near_duplicates")}
    return flagged, sets["exact_duplicates"], sets["near_duplicates"]


def scores(planted: dict, flagged: dict, exact: list[set], near: list[set]) -> dict[str, tuple[int, int, int]]:
    """{type: (planted found, planted, clean files flagged)}; a pair counts when one group holds both."""
    out = {}
    for t in TYPES:
        if t.endswith("duplicates"):
            groups = exact if t == "exact_duplicates" else near
            found = sum(any({a, b} <= g for g in groups) for a, b in planted[t])
            wrong = len({f for g in groups for f in g} & set(planted["clean"]))
        else:
            found = len(flagged[t] & set(planted[t]))
            wrong = len(flagged[t] & set(planted["clean"]))
        out[t] = (found, len(planted[t]), wrong)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", type=int, default=300)
    parser.add_argument("--per-type", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import cleanvision

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        planted = write_set(folder, args.clean, args.per_type, args.seed)
        *ours, per_image = run_augpipe(folder)
        start = time.perf_counter()
        theirs = run_cleanvision(folder)
        cv_seconds = time.perf_counter() - start
        mine, yours = scores(planted, *ours), scores(planted, *theirs)
        images = len(list(folder.iterdir()))
    print(f"{images} images ({args.clean} clean), seed {args.seed}; cleanvision {cleanvision.__version__}")
    print("| issue | augpipe recall | cleanvision recall | augpipe: clean flagged | cleanvision: clean flagged |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for t in TYPES:
        (a, n, fa), (c, _, fc) = mine[t], yours[t]
        print(f"| {t} | {a}/{n} | {c}/{n} | {fa}/{args.clean} | {fc}/{args.clean} |")
    print(f"augpipe measure() alone: {per_image * 1000:.1f} ms an image, {large_timing(args.seed) * 1000:.1f} ms "
          f"a 1920×1080 one; cleanvision (n_jobs=1, reading and decoding included): "
          f"{cv_seconds / images * 1000:.1f} ms an image")


if __name__ == "__main__":
    main()
