"""The loop every task shares: Adam over shuffled batches for a number of optimiser steps, an
evaluation on the validation split after each pass, and --compare's second run."""

from __future__ import annotations

import copy as copy_module
import math
import time

from augpipe.errors import UsageError
from augpipe.training.bootstrap import paired_interval, verdict
from augpipe.training.data import normalise, subset, take


def resolve_device(name: str):
    """auto: CUDA, else Apple's MPS, else the CPU; a device asked for by name and absent is one line."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if name == "mps" and not has_mps:
        raise UsageError("--device mps: no Apple GPU here (torch.backends.mps.is_available() is False)")
    if name not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device is auto, cpu, cuda or mps; not '{name}'")
    return torch.device(name)


def to_device(y, device):
    if isinstance(y, dict):
        return {k: to_device(v, device) for k, v in y.items()}
    if isinstance(y, list):
        return y
    return y.to(device)


def diverged(label: str, what: str, value: float, lr: float) -> str:
    run = "" if label == "expanded" else f" ({label} only, --compare)"
    return f"training diverged{run}: {what} is {value}; nothing was written: try a lower --lr than {lr:g}"


def fit(model, task, train, val, steps: int, opts, device, label: str, trainable=None) -> list[dict]:
    """Train for `steps` optimiser steps, evaluating after each pass over `train`.

    Each epoch's row: epoch, step, train_loss, the task's training figures (task.loss's sums over
    the rows seen), its validation figures (task.evaluate), images_per_second."""
    import torch
    from tqdm import tqdm

    params = [p for p in (trainable if trainable is not None else model.parameters()) if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=opts.lr)
    generator = torch.Generator().manual_seed(opts.seed)
    per_epoch = math.ceil(len(train) / opts.batch_size)
    history, step, epoch = [], 0, 0
    while step < steps:
        epoch += 1
        model.train()
        order = torch.randperm(len(train), generator=generator)
        batches = min(per_epoch, steps - step)
        seen, sums, total_loss = 0, {}, 0.0
        started = time.perf_counter()
        bar = tqdm(range(batches), desc=f"{label} epoch {epoch}", unit="batch", disable=not opts.progress, leave=False)
        for b in bar:
            index = order[b * opts.batch_size:(b + 1) * opts.batch_size]
            x = normalise(train.x[index].to(device))
            y = to_device(take(train.y, index), device)
            out = model(x)
            loss, stats = task.loss(out, y)
            value = loss.item()
            if not math.isfinite(value):
                raise UsageError(diverged(label, f"the loss at epoch {epoch}, step {step + b + 1}", value, opts.lr))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seen += len(index)
            total_loss += value * len(index)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        step += batches
        seconds = time.perf_counter() - started
        metrics, _ = task.evaluate(model, val, device, opts.batch_size)  # the memory check's batch, no bigger
        if not math.isfinite(metrics["val_loss"]):
            raise UsageError(diverged(label, f"the validation loss after epoch {epoch}", metrics["val_loss"], opts.lr))
        row = {"epoch": epoch, "step": step, "train_loss": total_loss / seen, **{k: v / seen for k, v in sums.items()},
               **metrics, "images_per_second": seen / seconds}
        history.append(row)
        opts.log(task.epoch_line(label, row))
    return history


def compare(model, task, initial: dict, rng_state, train, val, steps: int, opts, device, expanded: list[dict],
            predictions, freeze=None) -> dict:
    """The same model from the same initial weights on the originals only, for the same number
    of optimiser steps (and the same random stream): the difference is what augmentation adds,
    with its interval over the validation images (bootstrap.py); `predictions` the expanded
    model's on `val`."""
    import torch

    originals = subset(train, [i for i, c in enumerate(train.copies) if c == 0])
    if len(originals) == len(train):
        raise UsageError("--compare: this training split has no augmented rows to compare with")
    if len(originals) == 0:
        raise UsageError("--compare: this training split has no originals (copy 0): the recipe did not keep them")
    baseline = copy_module.deepcopy(model)
    baseline.load_state_dict(initial)
    torch.set_rng_state(rng_state[0])  # the same dropout stream as the expanded run had
    if rng_state[1] is not None:  # and the accelerator's, where dropout draws on the device
        (torch.cuda if device.type == "cuda" else torch.mps).set_rng_state(rng_state[1])
    trainable = freeze(baseline) if freeze is not None else None
    baseline.to(device)
    history = fit(baseline, task, originals, val, steps, opts, device, "originals", trainable)
    _, baseline_predictions = task.evaluate(baseline, val, device, opts.batch_size)
    interval = paired_interval(task.scorer(predictions, val), task.scorer(baseline_predictions, val), len(val))
    key = task.headline
    return {"originals": history, "lift": expanded[-1][key] - history[-1][key], "metric": key, "steps": steps,
            "same": "optimiser steps", "rows": {"expanded": len(train), "originals": len(originals)},
            "interval": interval, "validation_images": len(val), "verdict": verdict(interval, len(val))}
