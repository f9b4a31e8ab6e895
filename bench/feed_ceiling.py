"""What a feed of worker processes could reach without a DataLoader's machinery (issue 20's next
step at 64 px), against the decode floor and `readers.loader`'s DataLoader workers, in one run.

    python bench/feed_ceiling.py [--images 4000] [--size 64] [--repeat 3]

The sketch: 2 forked processes, each given its epoch's batches in one message, decode each batch
with augpipe's own row-group cache and batch decoder (`_picks`, `jpegs_into`) into a ring of
shared-memory slots and send the slot's number (2 bytes); the main process wraps the slot as a
tensor without a copy and frees it once the tensor ends (`weakref.finalize`); a process waits for
a slot the main process has freed. Images only: no labels, no collate, no error handling. The
DataLoader's workers give the same images with labels (channels_last, as the sketch's batches).
Every loader reads one untimed epoch first; each figure is the best of --repeat rounds of 2 epochs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
import weakref
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from read import BATCH, EPOCHS, WORKERS, decode_floor, expand_as_is  # noqa: E402

from expand import make_dataset  # noqa: E402

from augpipe.decode import jpegs_into  # noqa: E402
from augpipe.readers import ShardDataset, loader  # noqa: E402

SLOTS = 6


def _sketch_worker(k: int, path: str, side: int, conn, ring_name: str, flags_name: str) -> None:
    ring_memory, flags_memory = shared_memory.SharedMemory(ring_name), shared_memory.SharedMemory(flags_name)
    nbytes = BATCH * side * side * 3
    ring = np.ndarray((WORKERS, SLOTS, nbytes + 16), np.uint8, ring_memory.buf)[k]
    flags = np.ndarray((WORKERS, SLOTS), np.int64, flags_memory.buf)[k]
    dataset = ShardDataset(path)
    while (batches := conn.recv()) is not None:
        s = 0
        for batch in batches:
            while flags[s]:  # the main process still holds what this slot sent
                time.sleep(0.0001)
            blobs = [g.blob(i) for g, i in dataset._picks(batch)]
            jpegs_into(blobs, ring[s, 16:16 + len(blobs) * side * side * 3].reshape(len(blobs), side, side, 3))
            flags[s] = 1
            conn.send_bytes(bytes([s, len(blobs)]))
            s = (s + 1) % SLOTS
        conn.send_bytes(b"")
    del ring, flags
    ring_memory.close()
    flags_memory.close()


def sketch(path: Path, side: int, repeat: int) -> float:
    nbytes = BATCH * side * side * 3
    ring_memory = shared_memory.SharedMemory(create=True, size=WORKERS * SLOTS * (nbytes + 16))
    flags_memory = shared_memory.SharedMemory(create=True, size=WORKERS * SLOTS * 8)
    ring = np.ndarray((WORKERS, SLOTS, nbytes + 16), np.uint8, ring_memory.buf)
    flags = np.ndarray((WORKERS, SLOTS), np.int64, flags_memory.buf)
    flags[:] = 0
    pipes, processes = [], []
    try:
        for k in range(WORKERS):
            mine, theirs = mp.Pipe()
            process = mp.get_context("fork").Process(target=_sketch_worker, daemon=True,
                                                     args=(k, str(path), side, theirs, ring_memory.name,
                                                           flags_memory.name))
            process.start()
            pipes.append(mine)
            processes.append(process)
        n, generator = len(ShardDataset(path)), torch.Generator().manual_seed(0)

        def epoch() -> int:
            order = torch.randperm(n, generator=generator).tolist()
            batches = [order[i:i + BATCH] for i in range(0, n, BATCH)]
            for k, pipe in enumerate(pipes):
                pipe.send(batches[k::WORKERS])
            done, k, images = [False] * WORKERS, 0, 0
            while not all(done):
                if not done[k]:
                    message = pipes[k].recv_bytes()
                    if not message:
                        done[k] = True
                    else:
                        s, m = message
                        memory = ring[k, s, 16:16 + m * side * side * 3]
                        weakref.finalize(memory, flags.__setitem__, (k, s), 0)
                        batch = torch.from_numpy(memory).view(m, side, side, 3).permute(0, 3, 1, 2)
                        images += len(batch)
                        del batch, memory
                k = (k + 1) % WORKERS
            return images

        epoch()
        best = 0.0
        for _ in range(repeat):
            started = time.perf_counter()
            images = sum(epoch() for _ in range(EPOCHS))
            best = max(best, images / (time.perf_counter() - started))
        return best
    finally:
        for pipe in pipes:
            pipe.send(None)
        for process in processes:
            process.join(10)
        ring = flags = None  # the views go before the memory closes  # noqa: F841
        ring_memory.close()
        ring_memory.unlink()
        flags_memory.close()
        flags_memory.unlink()


def dataloader_workers(path: Path, repeat: int) -> float:
    batches = loader(ShardDataset(path, channels_last=True), BATCH, num_workers=WORKERS, seed=0)
    for _ in batches:
        pass
    best = 0.0
    for _ in range(repeat):
        started, images = time.perf_counter(), 0
        for _ in range(EPOCHS):
            images += sum(len(batch[0]) for batch in batches)
        best = max(best, images / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="augpipe-feed-ceiling-"))
    try:
        src = make_dataset(work / "src", args.images, args.size)
        out = expand_as_is(src, work / "out")
        blobs = [(p.read_bytes(),) for p in sorted(src.rglob("*.jpg"))]
        floor = max(decode_floor(blobs) for _ in range(args.repeat))
        rates = {"the sketch: processes of our own, a slot's number a batch": sketch(out, args.size, args.repeat),
                 "readers.loader: a DataLoader's 2 workers (channels_last)": dataloader_workers(out, args.repeat)}
        print(f"{args.images:,} JPEGs at {args.size}×{args.size}, batch {BATCH}, {WORKERS} processes, "
              f"{EPOCHS} epochs after 1 untimed, best of {args.repeat}")
        print(f"  {'feed':<60} {'images/s':>9}  {'vs floor':>8}")
        print(f"  {'decode floor (2 processes, bytes in memory)':<60} {floor:>9,.0f}  {1:>8.2f}")
        for name, rate in rates.items():
            print(f"  {name:<60} {rate:>9,.0f}  {rate / floor:>8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
