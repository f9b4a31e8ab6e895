"""The trainer's CUDA path on a machine with a GPU: the same run on cuda and on cpu.

    python bench/cuda_check.py EXPANDED_DATASET [--epochs 3]

Checks that --device auto picks CUDA, that a CUDA run learns like the CPU run, that dropout is off
in evaluation on the GPU, and prints the training speed of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from augpipe.training.model import DEFAULT_ARCH, build_model
from augpipe.options import TrainOptions
from augpipe.training.run import resolve_device, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", flush=True)
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    print(f"device: {torch.cuda.get_device_name(0)}; --device auto resolves to {resolve_device('auto')}")
    model = build_model(DEFAULT_ARCH, 32, 10).cuda().eval()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    with torch.no_grad():
        print(f"dropout off in eval on cuda: {torch.equal(model(x), model(x))}")
    results = {}
    for device in ("cuda", "cpu"):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            r = train(args.dataset, out, TrainOptions(epochs=args.epochs, device=device, progress=False,
                                                      log=lambda line: print(f"  [{device}] {line}", flush=True)))
            seconds = time.perf_counter() - started
        speed = sum(h["images_per_second"] for h in r["history"]) / len(r["history"])
        results[device] = (r["final_val_acc"], speed, seconds)
        print(f"{device}: final validation accuracy {r['final_val_acc']:.4f}, {speed:,.0f} training images/s, "
              f"{seconds:.1f} s in all ({r['device']})", flush=True)
    gap = abs(results["cuda"][0] - results["cpu"][0])
    print(f"cuda vs cpu: accuracy difference {gap:.4f}; training speed ratio {results['cuda'][1] / results['cpu'][1]:.1f}x")


if __name__ == "__main__":
    main()
