"""Reading speed: augpipe's readers against the decode floor, torchvision's ImageFolder and Hugging
Face `datasets`, on the same JPEGs, each through a DataLoader with 2 workers (augpipe's also
through 2 threads and 2 processes of its own), in one run.

    python bench/read.py [--images 3000] [--size 64] [--targets] [--channels-last] [--warm 1] [--epochs 2]

Install. The main environment (`pip install -e '.[train,bench]'`) runs everything but the
torchvision row, which it says it skipped: PyPI's torchvision does not import beside a CPU torch
of another release. For the whole table, a bench environment with the two from one release:

    python3 -m venv venv-feed
    venv-feed/bin/pip install torch==2.14.1 torchvision==0.29.1
    grep -v '^torch' .ci/constraints.txt > feed-constraints.txt   # the constraints less their torch pin
    venv-feed/bin/pip install -e '.[train,bench]' -c feed-constraints.txt
    venv-feed/bin/python bench/read.py

The shards hold the very bytes of the files (expand with --copies 0), so every reader decodes
the same JPEGs. Each loader: batch 64, shuffled, 2 workers kept across epochs, 2 epochs timed
(`--epochs N`: N, a longer window on a noisy machine) after the first batch (`--warm N`: after N more epochs, a long run's steady state: each worker
has read its row groups and parsed their headers); every measurement is taken --repeat times in
turn and its best kept. The
decode floor is 2 processes decoding the bytes from memory with libjpeg-turbo's own API
(`simplejpeg.decode_jpeg`, augpipe's JPEG decoder, called bare), nothing else, as many times as
the readers' timed epochs (one pass of 4,000 images at 64 px took 25 ms: a noisy clock), into
a batch of buffers at the alignment the decoder writes fastest to (see `_slots`); a second floor
is the same decode by 2 threads of one
process (each image's decode lets go of the GIL and takes it back), the most a feed of threads
can reach, and the threaded readers are also given against it. A third is OpenCV's imdecode in 2
processes (augpipe's decode before, and most scripts'), for the decoder's own gain.

- augpipe ShardDataset and ShardIterable through `augpipe.readers.loader` (a DataLoader with
  augpipe's defaults: batches made whole in the workers), each through `loader(threads=2)`
  (`ThreadLoader`: the batches made by 2 threads of the main process), and each through
  `loader(processes=2)` (`ProcessLoader`: 2 processes of augpipe's own, no DataLoader);
- torchvision.datasets.ImageFolder with PILToTensor (uint8 C×H×W, as augpipe gives);
- Hugging Face datasets: load_dataset("imagefolder") of the same folder, with_format("torch")
  (loading and its Arrow cache are not timed).

`--channels-last`: also each reader with `channels_last=True` (the batch in torch's channels_last
memory format, each JPEG decoded straight into it).

`--targets`: detection (a COCO folder, 5 boxes an image on average) and segmentation (a masks
folder, a mask an image), made by bench/targets.py from the same images. Ratios are against the
images' floor, so the readers' target work (boxes, the mask's PNG) counts against them; a second
floor decodes the segmentation rows' masks too, and the segmentation readers are given against it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from expand import arguments, make_dataset, rate_in_processes  # noqa: E402

from augpipe.readers import ShardDataset, ShardIterable, loader  # noqa: E402

BATCH, WORKERS, EPOCHS = 64, 2, 2
WARM = 0  # whole epochs each loader reads before the clock (--warm)
_IMAGES = [3000]  # the run's --images: the floor's timed work, for its note
FLOOR = "decode floor (2 processes, bytes in memory)"
THREADS_FLOOR = "decode floor, 2 threads of one process"
OPENCV_FLOOR = "decode floor by OpenCV's imdecode (2 processes)"
MASKS_FLOOR = "decode floor, images and masks (mask_array)"
TORCHVISION = "torchvision ImageFolder (PILToTensor)"
HF = "HF datasets imagefolder, with_format('torch')"


def timed(batches, epochs: int | None = None) -> float:
    """Images a second over `epochs` passes, the workers started before the clock (and with
    --warm, that many epochs read before it: each worker's row-group cache filled)."""
    next(iter(batches))
    for epoch in range(WARM):
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        for _ in batches:
            pass
    n, started = 0, time.perf_counter()
    for epoch in range(WARM, WARM + (epochs or EPOCHS)):
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        for batch in batches:
            images = batch["image"] if isinstance(batch, dict) else batch[0]
            n += len(images)
    return n / (time.perf_counter() - started)


def plain_loader(dataset):
    """The peers' DataLoader: the same batch, workers and shuffle, default collate."""
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
                                       persistent_workers=True, generator=torch.Generator().manual_seed(0))


def augpipe_readers(out: Path, suffix: str = "", **options) -> dict:
    """Each reader's measurement, to run: a fresh loader each time (its workers gone after).
    `options`: the readers' (channels_last=True)."""
    return {f"augpipe ShardDataset{suffix}":
            lambda: timed(loader(ShardDataset(out, "train", **options), BATCH, num_workers=WORKERS, seed=0)),
            f"augpipe ShardIterable{suffix}":
            lambda: timed(loader(ShardIterable(out, "train", shuffle=True, seed=0, **options), BATCH,
                                 num_workers=WORKERS)),
            f"augpipe ShardDataset, {WORKERS} threads{suffix}":
            lambda: timed(loader(ShardDataset(out, "train", **options), BATCH, threads=WORKERS, seed=0)),
            f"augpipe ShardIterable, {WORKERS} threads{suffix}":
            lambda: timed(loader(ShardIterable(out, "train", shuffle=True, seed=0, **options), BATCH,
                                 threads=WORKERS)),
            f"augpipe ShardDataset, {WORKERS} processes{suffix}":
            lambda: closed(loader(ShardDataset(out, "train", **options), BATCH, processes=WORKERS, seed=0)),
            f"augpipe ShardIterable, {WORKERS} processes{suffix}":
            lambda: closed(loader(ShardIterable(out, "train", shuffle=True, seed=0, **options), BATCH,
                                  processes=WORKERS))}


def closed(batches) -> float:
    """`timed`, then the feed's processes ended (`ProcessLoader.close`)."""
    try:
        return timed(batches)
    finally:
        batches.close()


def torchvision_folder(src: Path):
    try:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import PILToTensor
    except Exception as exc:  # noqa: BLE001 - an ImportError, or torchvision's own operator error
        return f"skipped: torchvision does not import here ({str(exc).splitlines()[0][:70]})"
    return lambda: timed(plain_loader(ImageFolder(str(src), transform=PILToTensor())))


def hf_datasets(src: Path, cache: Path):
    try:
        import datasets
    except ImportError:
        return "skipped: datasets is not installed (pip install -e '.[bench]')"
    datasets.disable_progress_bars()
    ds = datasets.load_dataset("imagefolder", data_dir=str(src), split="train", cache_dir=str(cache))
    return lambda: timed(plain_loader(ds.with_format("torch")))


def best_of(measures: dict, repeat: int) -> dict[str, float | str]:
    """Each measurement's best rate over `repeat` rounds taken in turn (the machine is shared: a
    round a reader happened to share with another job says little); a string says why it was skipped."""
    best: dict = {name: m if isinstance(m, str) else 0.0 for name, m in measures.items()}
    for _ in range(repeat):
        for name, m in measures.items():
            if not isinstance(m, str):
                best[name] = max(best[name], m())
    return best


def _decode_all(blobs: list[tuple[bytes, ...]], barrier, result, opencv: bool = False, epochs: int = EPOCHS) -> None:
    import cv2
    import numpy as np
    import simplejpeg

    from augpipe.targets.semantic import mask_array  # the segmentation kind's decode of a stored mask

    slots = _slots(blobs)
    barrier.wait()
    started = time.perf_counter()
    for _ in range(epochs):  # the images the readers are timed on (4,000 at 64 px took 25 ms once: noise)
        for k, (image, *masks) in enumerate(blobs):
            if opencv:
                cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR_RGB)
            else:
                simplejpeg.decode_jpeg(image, "rgb", buffer=slots[k % BATCH])
            for mask in masks:
                mask_array({"annotation": {"bytes": mask}})
    result.put((epochs * len(blobs), time.perf_counter() - started))


def _slots(blobs: list[tuple[bytes, ...]]):
    """A batch of output buffers for the bare decoder, the first 16 bytes past a 32-byte boundary
    as augpipe's readers decode into (`readers._off_boundary`): libjpeg-turbo writes rows that
    start on such a boundary with non-temporal stores, 1.2-1.4× slower at 64 px, and an array it
    allocates itself lands on one or not as the process's heap falls (this floor came out at
    60,000 or at 90,000 images/s at 64 px, run by run)."""
    import numpy as np
    import simplejpeg

    height, width = (max(side) for side in zip(*(simplejpeg.decode_jpeg_header(b[0])[:2] for b in blobs)))
    flat = np.empty(BATCH * height * width * 3 + 32, np.uint8)
    start = (16 - flat.ctypes.data) % 32
    return flat[start:start + BATCH * height * width * 3].reshape(BATCH, -1)


def decode_floor(blobs: list[tuple[bytes, ...]], processes: int = WORKERS, opencv: bool = False) -> float:
    """Rows a second of `processes` processes decoding each row's image (and mask) from memory,
    once an epoch of the readers' timed epochs,
    by libjpeg-turbo's own API (simplejpeg, augpipe's JPEG decoder, called as it is: the fastest
    decode of these bytes known here) or by OpenCV's imdecode."""
    return rate_in_processes(functools.partial(_decode_all, opencv=opencv, epochs=EPOCHS),
                             [blobs[i::processes] for i in range(processes)])


def decode_floor_threads(blobs: list[tuple[bytes, ...]], threads: int = WORKERS) -> float:
    """The same decode by `threads` threads of this process (the decoder lets go of the GIL for
    each image, and takes it back after): the most a feed of threads can give here."""
    import queue
    import threading

    barrier, result = threading.Barrier(threads), queue.Queue()
    workers = [threading.Thread(target=_decode_all, args=(blobs[i::threads], barrier, result, False, EPOCHS))
               for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    got = [result.get() for _ in workers]
    return sum(n for n, _ in got) / max(s for _, s in got)


def print_threads(rates: dict, floor: float) -> None:
    print(f"  the feeds of threads against the threads' floor ({floor:,.0f} images/s):")
    for name, value in rates.items():
        if "threads" in name and not isinstance(value, str) and name != THREADS_FLOOR:
            print(f"    {name}: {value / floor:.2f}")


def stored_bytes(out: Path, columns: list[str]) -> list[tuple[bytes, ...]]:
    from augpipe.dataset import open_dataset

    table = open_dataset(out).read("train", columns)
    return list(zip(*(table.column(c).combine_chunks().field("bytes").to_pylist() for c in columns)))


def expand_as_is(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "augpipe", "expand", str(src), "-r", "flips", "-o", str(out), "--copies", "0",
                    "--val-fraction", "0", "-q"], check=True, stdout=subprocess.DEVNULL)
    return out


def print_table(title: str, floor: float, rates: dict[str, float | str], peers: list[str]) -> None:
    print(title)
    heads = "".join(f"  {'vs ' + p.split()[0]:>14}" for p in peers)
    width = max(46, *map(len, rates))
    print(f"  {'reader':<{width}} {'images/s':>9}  {'vs floor':>8}{heads}")
    for name, value in {FLOOR: floor, **rates}.items():
        if isinstance(value, str):
            print(f"  {name:<{width}} {value}")
            continue
        cells = "".join(f"  {value / rates[p]:>14.2f}" if not isinstance(rates.get(p), (str, type(None))) else
                        f"  {'-':>14}" for p in peers)
        print(f"  {name:<{width}} {value:>9,.0f}  {value / floor:>8.2f}{cells}")
    for note in _notes(floor, rates):
        print(f"  note: {note}")


def _notes(floor: float, rates: dict) -> list[str]:
    """What makes a table's ratios less than they seem: a short clock, a floor measured low."""
    notes = []
    seconds = EPOCHS * _IMAGES[0] / floor
    if seconds < 1:
        notes.append(f"the floor's timed work is {seconds:.2f} s: so short a window is noisy (more --epochs or "
                     "--images, for a second or more)")
    above = [name for name, value in rates.items() if isinstance(value, float) and value > floor]
    if above:
        notes.append(f"{', '.join(above)} above the floor, which is the decode alone: "
                     "nothing that decodes too can pass it, so the machine was busier while the floor was "
                     "measured (another load): rerun on a quiet machine")
    return notes


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--images", type=int, default=3000, help="JPEGs")
    parser.add_argument("--size", type=int, default=64, help="their side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="rounds taken in turn; each figure is its best")
    parser.add_argument("--targets", action="store_true", help="detection (5 boxes an image) and segmentation "
                                                               "(a mask an image) in place of the peers")
    parser.add_argument("--channels-last", action="store_true", help="also each reader with channels_last=True")
    parser.add_argument("--warm", type=int, default=0, help="epochs each loader reads before the clock: the steady "
                                                             "state of a long run (0: the first epochs, their row "
                                                             "groups read and headers parsed, are timed; the "
                                                             "README's figures are --warm 1)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed (at 64 px an epoch of 3,000 images "
                                                                    "is a tenth of a second: more for a steadier "
                                                                    "figure on a busy machine)")
    args = parser.parse_args()
    global WARM, EPOCHS
    WARM, EPOCHS = args.warm, args.epochs
    _IMAGES[0] = args.images
    work = Path(tempfile.mkdtemp(prefix="augpipe-read-"))
    setting = (f"{args.images:,} JPEGs at {args.size}×{args.size}, batch {BATCH}, shuffled, {WORKERS} workers "
               f"(a DataLoader's, persistent; or {WORKERS} threads, {WORKERS} processes), {EPOCHS} epochs{f' after {args.warm} untimed' if args.warm else ''}, "
               f"{f'best of {args.repeat} rounds' if args.repeat > 1 else '1 round'}; torch {torch.__version__}")
    try:
        src = make_dataset(work / "src", args.images, args.size)
        blobs = [(p.read_bytes(),) for p in sorted(src.rglob("*.jpg"))]
        measures: dict = {FLOOR: lambda: decode_floor(blobs), THREADS_FLOOR: lambda: decode_floor_threads(blobs),
                          OPENCV_FLOOR: lambda: decode_floor(blobs, opencv=True)}
        if args.targets:
            from targets import add_targets

            made = add_targets(src, work)
            detection = expand_as_is(made["detection"], work / "out-detection")
            segmentation = expand_as_is(made["segmentation"], work / "out-segmentation")
            with_masks = stored_bytes(segmentation, ["image", "annotation"])
            measures.update(augpipe_readers(detection, ", detection"))
            if args.channels_last:
                measures.update(augpipe_readers(detection, ", detection, channels_last", channels_last=True))
            measures[MASKS_FLOOR] = lambda: decode_floor(with_masks)
            measures.update(augpipe_readers(segmentation, ", segmentation"))
            if args.channels_last:
                measures.update(augpipe_readers(segmentation, ", segmentation, channels_last", channels_last=True))
            rates = best_of(measures, args.repeat)
            floor = rates.pop(FLOOR)
            print_table(f"{setting}\ntargets: detection 5 boxes an image on average (COCO), segmentation a mask an "
                        "image; ratios against the images' floor", floor, rates, [])
            for name, value in rates.items():
                if "segmentation" in name:
                    print(f"  {name} / the floor with the masks: {value / rates[MASKS_FLOOR]:.2f}")
            print_threads({k: v for k, v in rates.items() if "threads, detection" in k}, rates[THREADS_FLOOR])
            return
        out = expand_as_is(src, work / "out")
        measures.update(augpipe_readers(out))
        if args.channels_last:
            measures.update(augpipe_readers(out, ", channels_last", channels_last=True))
        measures[TORCHVISION] = torchvision_folder(src)
        measures[HF] = hf_datasets(src, work / "hf")
        rates = best_of(measures, args.repeat)
        print_table(setting, rates.pop(FLOOR), rates, [TORCHVISION, HF])
        print_threads(rates, rates[THREADS_FLOOR])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
