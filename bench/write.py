"""Writing shards: augpipe's shard file (O_DIRECT where the file system takes it and is not held
in memory, a thread writing one block while the next fills) against an ordinary buffered file,
both hashed on the way out and synced at the end, as expand's workers write them.

    python bench/write.py [--dir DIR] [--files 20] [--mb 8] [--repeat 3]

--files files of --mb MB each (a 320 px run's shards), written in pieces of the sizes a Parquet
writer hands over (a row group's pages: from a few bytes to a few MB), into DIR (by default a
temporary folder beside this script, on the disk the shards would go to). Prints the wall and the
system CPU seconds of each way, the medians of --repeat, taken in turn, and their ratios. System
time is what matters to expand: its workers keep every core busy, so CPU the kernel spends copying
shards into new page-cache pages is CPU taken from augmenting.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augpipe.shards import _HashingFile, _open_new  # noqa: E402


class _Ordinary:
    """The writer augpipe had before: a buffered file, hashed on the way out, fsynced."""

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._hash = hashlib.sha256()

    def write(self, data) -> int:
        self._hash.update(data)
        return self._fh.write(data)

    def sync_and_close(self) -> tuple[str, int]:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        size = self._fh.tell()
        self._fh.close()
        return self._hash.hexdigest(), size


def pieces(mb: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    data = rng.randbytes(mb << 20)
    out, at = [], 0
    while at < len(data):
        step = rng.choice([9, 150, 4_000, 30_000, 2 << 20, 4 << 20])
        out.append(data[at:at + step])
        at += step
    return out


def run(way, folder: Path, files: int, chunks: list[bytes]) -> tuple[float, float, set]:
    """(wall seconds, system seconds, the files' checksums)."""
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    sums = set()
    for i in range(files):
        sink = way(folder / f"shard-{i:05d}.tmp")
        for chunk in chunks:
            sink.write(chunk)
        sums.add(sink.sync_and_close())
    wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return wall, after.ru_stime - before.ru_stime, sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--mb", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="augpipe-write-", dir=args.dir or Path(__file__).parent))
    chunks = pieces(args.mb, 0)
    figures: dict[str, list] = {"ordinary": [], "augpipe": []}
    try:
        for r in range(args.repeat):
            for name, way in (("ordinary", _Ordinary), ("augpipe", _HashingFile)):
                folder = root / f"{name}-{r}"  # new files each time: no pages just freed to reuse
                folder.mkdir()
                wall, sys_s, sums = run(way, folder, args.files, chunks)
                figures[name].append((wall, sys_s, sums))
        assert {s for f in figures.values() for _, _, s in f for s in s} == figures["ordinary"][0][2], "bytes differ"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = args.files * args.mb
    probe = Path(tempfile.mkdtemp(dir=args.dir or Path(__file__).parent))
    fd, direct = _open_new(probe / "probe")
    os.close(fd)
    shutil.rmtree(probe)
    print(f"augpipe bench: writing {args.files} shards of {args.mb} MB ({total} MB), medians of {args.repeat}, "
          f"in {root.parent} (augpipe writes there {'around' if direct else 'through'} the page cache)")
    print(f"  {'way':<52} {'wall s':>8} {'system s':>9}")
    med = {name: (statistics.median(w for w, _, _ in f), statistics.median(s for _, s, _ in f))
           for name, f in figures.items()}
    for name, label in (("ordinary", "ordinary buffered file, fsync"),
                        ("augpipe", "augpipe's shard file")):
        print(f"  {label:<52} {med[name][0]:8.3f} {med[name][1]:9.3f}")
    print(f"  {'augpipe / ordinary':<52} {med['augpipe'][0] / med['ordinary'][0]:8.2f} "
          f"{med['augpipe'][1] / max(med['ordinary'][1], 1e-9):9.2f}")
    print("  the same bytes and checksums both ways")


if __name__ == "__main__":
    main()
