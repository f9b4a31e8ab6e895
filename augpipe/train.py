"""The sanity trainer: a tiny CNN on the shards, to show the data learns and what augmentation adds.

Needs the `train` extra (torch, matplotlib). The splits are decoded once into memory at
`size`×`size`: this is a check of the data, not a training framework.
"""

from __future__ import annotations

import copy as copy_module
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from augpipe.errors import SourceError, UsageError
from augpipe.model import (DEFAULT_ARCH, build_model, classifier_index, format_table, layer_table, megabytes,
                           memory_bytes)

MEAN, STD = 0.5, 0.25
DEFAULT_SIZE = 32


@dataclass
class TrainOptions:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    arch: str | None = None  # None: DEFAULT_ARCH, or the --init checkpoint's
    size: int | None = None  # None: DEFAULT_SIZE, or the checkpoint's
    seed: int = 0
    device: str = "auto"
    compare: bool = False
    init: str | None = None
    freeze: str | None = None
    progress: bool = True
    log: object = field(default=print, repr=False)  # where progress lines go


@dataclass
class Split:
    x: object  # uint8 tensor N×3×S×S
    y: object  # int64 tensor N
    sources: list[str]
    copies: list[int]
    contents: list[str] = field(default_factory=list)  # each row's source_sha256


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


# ---------------------------------------------------------------- data

def load_split(ds, split: str, size: int, progress: bool = True) -> Split | None:
    import torch
    from tqdm import tqdm

    from augpipe.decode import resize, row_image

    table = ds.read(split, columns=["image", "label", "source", "copy", "source_sha256"])
    if table is None:
        return None
    images = table.column("image").combine_chunks().field("bytes").to_pylist()
    x = np.empty((len(images), size, size, 3), np.uint8)
    for i, data in enumerate(tqdm(images, desc=f"decode {split}", unit="img", disable=not progress, leave=False)):
        try:
            x[i] = resize(row_image(data), size, size)
        except ValueError:
            raise SourceError(f"{split} row {i}: image does not decode (augpipe inspect --verify shows more)") from None
    labels = table.column("label").to_pylist()
    if any(label is None for label in labels):
        raise SourceError("this dataset is unlabelled: training needs class folders")
    return Split(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64),
                 table.column("source").to_pylist(), table.column("copy").to_pylist(),
                 table.column("source_sha256").to_pylist())


def check_dataset(train: Split | None, val: Split | None, classes: list[str]) -> None:
    if train is None:
        raise SourceError("no training split (train-*.parquet)")
    if val is None:
        raise SourceError("no validation split: expand with --val-fraction above 0, or a val/ folder")
    if len(classes) < 2:
        raise SourceError(f"{len(classes)} class: training needs at least two")
    for name, split in (("training", train), ("validation", val)):
        if len(split.y) == 0:
            raise SourceError(f"the {name} split has no rows: were all inputs skipped? (augpipe inspect lists why)")
    leaked = set(train.sources) & set(val.sources)
    if leaked:
        example = sorted(leaked)[0]
        raise SourceError(f"leakage: {plural(len(leaked), 'validation source')} also in training (e.g. {example})")
    same = set(train.contents) & set(val.contents)
    if same:
        example = next(s for s, c in zip(val.sources, val.contents) if c in same)
        raise SourceError(f"leakage: {plural(len(same), 'validation image')} with identical copies in training "
                          f"(e.g. {example}): expand with --split-by content")


def subset(split: Split, keep: list[int]) -> Split:
    import torch

    index = torch.tensor(keep, dtype=torch.int64)
    return Split(split.x[index], split.y[index], [split.sources[i] for i in keep], [split.copies[i] for i in keep],
                 [split.contents[i] for i in keep] if split.contents else [])


# ---------------------------------------------------------------- one run

def resolve_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    return torch.device(name)


def _normalise(x):
    return (x.float() / 255 - MEAN) / STD


def evaluate(model, data: Split, device, batch_size: int = 512) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, predictions), dropout off."""
    import torch
    import torch.nn.functional as F

    model.eval()
    losses, preds = [], []
    with torch.no_grad():
        for start in range(0, len(data.y), batch_size):
            x = _normalise(data.x[start:start + batch_size].to(device))
            y = data.y[start:start + batch_size].to(device)
            logits = model(x)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds).numpy()
    return sum(losses) / len(data.y), float((pred == data.y.numpy()).mean()), pred


def fit(model, train: Split, val: Split, steps: int, opts: TrainOptions, device, label: str,
        trainable=None) -> list[dict]:
    """Train for `steps` optimiser steps, evaluating after each pass over `train`."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    params = [p for p in (trainable if trainable is not None else model.parameters()) if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=opts.lr)
    generator = torch.Generator().manual_seed(opts.seed)
    per_epoch = math.ceil(len(train.y) / opts.batch_size)
    history, step, epoch = [], 0, 0
    while step < steps:
        epoch += 1
        model.train()
        order = torch.randperm(len(train.y), generator=generator)
        batches = min(per_epoch, steps - step)
        seen = correct = 0
        total_loss = 0.0
        started = time.perf_counter()
        bar = tqdm(range(batches), desc=f"{label} epoch {epoch}", unit="batch", disable=not opts.progress, leave=False)
        for b in bar:
            index = order[b * opts.batch_size:(b + 1) * opts.batch_size]
            x, y = _normalise(train.x[index].to(device)), train.y[index].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            total_loss += loss.item() * len(y)
        step += batches
        seconds = time.perf_counter() - started
        val_loss, val_acc, _ = evaluate(model, val, device, opts.batch_size)  # the memory check's batch, no bigger
        row = {"epoch": epoch, "step": step, "train_loss": total_loss / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "images_per_second": seen / seconds}
        history.append(row)
        opts.log(f"{label:>9} epoch {epoch:>3}  train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}  "
                 f"val loss {val_loss:.3f} acc {val_acc:.3f}  {row['images_per_second']:,.0f} img/s")
    return history


def _at_chance(history: list[dict], classes: int) -> bool:
    """Training accuracy still near 1/classes after the first epochs."""
    return len(history) >= 3 and history[-1]["train_acc"] <= 1.25 / classes


# ---------------------------------------------------------------- the command

CHECKPOINT_KEYS = ("state_dict", "arch", "size", "classes")


def load_checkpoint(path: str | Path) -> dict:
    """A model.pt as plain data and tensors only: a pickle that would call anything is refused
    by torch's weights-only unpickler before it runs."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" (it would call {found.group(1)})" if found else ""
        raise UsageError(f"--init {path}: refused, it holds more than tensors and plain data{what}; "
                         f"only a model.pt that augpipe train wrote loads") from None
    except Exception as exc:  # a file we did not write: torch raises anything from OSError to KeyError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--init {path}: cannot load ({first})") from None
    if not (isinstance(ckpt, dict) and all(k in ckpt for k in CHECKPOINT_KEYS) and isinstance(ckpt["arch"], str)
            and isinstance(ckpt["size"], int) and isinstance(ckpt["state_dict"], dict)):
        raise UsageError(f"--init {path}: not a model.pt from augpipe train (needs {', '.join(CHECKPOINT_KEYS)})")
    return ckpt


def _same_arch(a: str, b: str, classes: int) -> bool:
    return a.replace("{classes}", str(classes)) == b.replace("{classes}", str(classes))


def resolve_arch(opts: TrainOptions, classes: int, log) -> tuple[str, int, dict | None]:
    """(arch, size, checkpoint): the options', or with --init the checkpoint's, which a different
    --arch or --size contradicts."""
    if opts.init is None:
        return (DEFAULT_ARCH if opts.arch is None else opts.arch,
                DEFAULT_SIZE if opts.size is None else opts.size, None)
    ckpt = load_checkpoint(opts.init)
    arch, size = ckpt["arch"], ckpt["size"]
    if opts.arch is not None and not _same_arch(opts.arch, arch, classes):
        raise UsageError(f"--arch {opts.arch} differs from the --init model's {arch}: leave --arch out with --init")
    if opts.size is not None and opts.size != size:
        raise UsageError(f"--size {opts.size} differs from the --init model's {size}: leave --size out with --init")
    taken = [f"--{name} {value}" for name, value, given in (("arch", arch, opts.arch), ("size", size, opts.size))
             if given is None]
    if taken:
        log(f"init: {' and '.join(taken)} from {opts.init}")
    return arch, size, ckpt


def make_model(arch: str, size: int, classes: list[str], ckpt: dict | None, source: str | None, log):
    """The model, with the checkpoint's weights when given (a new classifier when the class count differs)."""
    model = build_model(arch, size, len(classes))
    if ckpt is None:
        return model
    state, new_head = ckpt["state_dict"], len(ckpt["classes"]) != len(classes)
    if new_head:
        head = f"{classifier_index(model)}."
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        log(f"init: {source} ({plural(len(ckpt['classes']), 'class')}): features loaded, a new classifier for "
            f"{plural(len(classes), 'class')}")
    else:
        log(f"init: {source}: all weights loaded")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # a tensor of the wrong shape
        raise UsageError(f"--init {source}: its weights do not fit its architecture {arch}") from None
    if unexpected or any(not (new_head and k.startswith(head)) for k in missing):
        raise UsageError(f"--init {source}: its weights do not fit its architecture {arch} "
                         f"({len(missing)} missing, {len(unexpected)} unexpected)")
    return model


def available_memory(device) -> int | None:
    """Bytes this run may still take: the GPU's free memory on CUDA, else the host's MemAvailable
    (/proc/meminfo, or os.sysconf elsewhere); None when neither says."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(rows, size: int, batch: int, device, decoded_rows: int) -> None:
    """Refuses, before anything is allocated, a run whose training step (model.memory_bytes) and
    decoded splits (uint8, in host memory) would not fit."""
    import torch

    step, data = memory_bytes(rows, size, batch), decoded_rows * 3 * size * size
    if device.type == "cuda":
        needs = [(step, available_memory(device), f" on {device}"),
                 (data, available_memory(torch.device("cpu")), " on the host")]
    else:
        needs = [(step + data, available_memory(device), "")]
    for need, limit, where in needs:
        if limit is not None and need > limit:
            raise UsageError(f"memory: about {megabytes(step)} for a batch of {batch} and {megabytes(data)} for the "
                             f"decoded splits, more than the {megabytes(limit)} available{where}: "
                             f"use a smaller --batch-size, --size or fewer channels in --arch")


def _decoded_rows(manifest: dict, compare: bool) -> int:
    """Rows decoded into memory: train, validation, and with --compare a copy of the originals."""
    counts = manifest.get("counts", {})
    rows = sum(counts.get(s, {}).get("rows", 0) for s in ("train", "validation"))
    return rows + (counts.get("train", {}).get("originals", 0) if compare else 0)


def freeze_features(model) -> list:
    head = classifier_index(model)
    for i, module in enumerate(model):
        for p in module.parameters():
            p.requires_grad = i == head
    return list(model[head].parameters())


def _plan(path, opts: TrainOptions) -> tuple[object, TrainOptions, object, dict | None]:
    """Everything that can be refused is, before a model is built or data read:
    (the dataset, the options with arch and size settled, device, checkpoint)."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(path)
    classes = ds.classes
    if len(classes) < 2:
        raise SourceError(f"{len(classes)} class: training needs at least two")
    if opts.freeze is not None and opts.init is None:
        raise UsageError("--freeze needs --init: freezing random features would leave only the classifier to learn")
    arch, size, ckpt = resolve_arch(opts, len(classes), opts.log)
    opts = replace(opts, arch=arch, size=size)
    rows = layer_table(arch, size, len(classes))
    for line in format_table(rows, size, batch=opts.batch_size):
        opts.log(line)
    device = resolve_device(opts.device)
    check_memory(rows, size, opts.batch_size, device, _decoded_rows(ds.manifest, opts.compare))
    return ds, opts, device, ckpt


def train(path: str | Path, out: str | Path, opts: TrainOptions) -> dict:
    import torch

    out, log = Path(out), opts.log
    ds, opts, device, ckpt = _plan(path, opts)
    classes = ds.classes
    arch, size = opts.arch, opts.size
    torch.manual_seed(opts.seed)
    model = make_model(arch, size, classes, ckpt, opts.init, log)
    train_data = load_split(ds, "train", size, opts.progress)
    val_data = load_split(ds, "validation", size, opts.progress)
    check_dataset(train_data, val_data, classes)
    trainable = freeze_features(model) if opts.freeze == "features" else None
    initial = copy_module.deepcopy(model.state_dict())
    model.to(device)
    steps = opts.epochs * math.ceil(len(train_data.y) / opts.batch_size)
    log(f"training on {device}: {plural(len(train_data.y), 'row')}, {len(val_data.y):,} validation, "
        f"{plural(len(classes), 'class')}, {plural(opts.epochs, 'epoch')} "
        f"({plural(steps, 'step')} of {opts.batch_size})")
    rng_state = (torch.get_rng_state(), torch.cuda.get_rng_state() if device.type == "cuda" else None)
    history = fit(model, train_data, val_data, steps, opts, device, "expanded", trainable)
    result = {"arch": arch, "size": size, "classes": classes, "device": str(device), "options": _plain(opts),
              "history": history}
    if _at_chance(history, len(classes)):
        result["warning"] = (f"training accuracy stays at chance ({history[-1]['train_acc']:.2f} for "
                             f"{len(classes)} classes): are the labels scrambled or the images blank?")
        log(f"warning: {result['warning']}")
    if opts.compare:
        result["compare"] = _compare(model, initial, rng_state, train_data, val_data, steps, opts, device, history, classes)
    _, _, pred = evaluate(model, val_data, device, opts.batch_size)
    result.update(_report(pred, val_data, train_data, classes, history))
    _write_outputs(out, model, result, arch, size, classes, val_data, pred)
    return result


def _compare(model, initial: dict, rng_state, train_data: Split, val_data: Split, steps: int, opts: TrainOptions, device,
             expanded: list[dict], classes: list[str]) -> dict:
    """The same model from the same initial weights on the originals only, for the same number
    of optimiser steps: the difference is what augmentation adds."""
    originals = subset(train_data, [i for i, c in enumerate(train_data.copies) if c == 0])
    if len(originals.y) == len(train_data.y):
        raise UsageError("--compare: this training split has no augmented rows to compare with")
    if len(originals.y) == 0:
        raise UsageError("--compare: this training split has no originals (copy 0): the recipe did not keep them")
    import torch

    baseline = copy_module.deepcopy(model)
    baseline.load_state_dict(initial)
    torch.set_rng_state(rng_state[0])  # the same dropout stream as the expanded run had
    if rng_state[1] is not None:
        torch.cuda.set_rng_state(rng_state[1])
    trainable = freeze_features(baseline) if opts.freeze == "features" else None
    baseline.to(device)
    history = fit(baseline, originals, val_data, steps, opts, device, "originals", trainable)
    lift = expanded[-1]["val_acc"] - history[-1]["val_acc"]
    return {"originals": history, "lift": lift, "steps": steps, "same": "optimiser steps",
            "rows": {"expanded": len(train_data.y), "originals": len(originals.y)}}


def _report(pred: np.ndarray, val: Split, train: Split, classes: list[str], history: list[dict]) -> dict:
    truth = val.y.numpy()
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    majority = int(np.bincount(train.y.numpy(), minlength=n).argmax())
    best = max(history, key=lambda h: h["val_acc"])
    per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, c in enumerate(classes)}
    return {
        "best_epoch": best["epoch"], "best_val_acc": best["val_acc"], "final_val_acc": history[-1]["val_acc"],
        "majority_baseline": float((truth == majority).mean()), "majority_class": classes[majority],
        "per_class_acc": per_class, "confusion": confusion.tolist(),
    }


def _plain(opts: TrainOptions) -> dict:
    return {k: v for k, v in asdict(opts).items() if k not in ("log", "progress")}


def _write_outputs(out: Path, model, result: dict, arch: str, size: int, classes: list[str], val: Split,
                   pred: np.ndarray) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "arch": arch, "size": size, "classes": classes,
                "mean": MEAN, "std": STD}, out / "model.pt")
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_curves(result, out / "curves.png")
    plot_confusion(np.array(result["confusion"]), classes, out / "confusion.png")


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"expanded": result["history"]}
    if "compare" in result:
        runs["originals only"] = result["compare"]["originals"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for (name, history), colour in zip(runs.items(), ("tab:blue", "tab:orange")):
        steps = [h["step"] for h in history]
        ax_loss.plot(steps, [h["train_loss"] for h in history], "--", color=colour, label=f"{name} train")
        ax_loss.plot(steps, [h["val_loss"] for h in history], "-", color=colour, label=f"{name} validation")
        ax_acc.plot(steps, [h["train_acc"] for h in history], "--", color=colour, label=f"{name} train")
        ax_acc.plot(steps, [h["val_acc"] for h in history], "-", color=colour, label=f"{name} validation")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("optimiser steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_lines(result: dict) -> list[str]:
    classes = result["classes"]
    lines = [f"best epoch {result['best_epoch']}: validation accuracy {result['best_val_acc']:.3f} "
             f"(final {result['final_val_acc']:.3f}); always guessing '{result['majority_class']}' scores "
             f"{result['majority_baseline']:.3f}"]
    lines.append("per class: " + ", ".join(f"{c} {a:.2f}" if a is not None else f"{c} -"
                                           for c, a in result["per_class_acc"].items()))
    width = max(len(c) for c in classes)
    lines.append("confusion (rows true, columns predicted):")
    for c, row in zip(classes, result["confusion"]):
        lines.append(f"  {c:>{width}} " + " ".join(f"{v:>4}" for v in row))
    if "compare" in result:
        lines.append(lift_line(result))
    return lines


def lift_line(result: dict) -> str:
    compare, rows = result["compare"], result["compare"]["rows"]
    expanded, originals = result["history"][-1]["val_acc"], compare["originals"][-1]["val_acc"]
    return (f"augmentation lift: validation accuracy {expanded:.3f} (expanded, {plural(rows['expanded'], 'row')}) "
            f"vs {originals:.3f} (originals, {plural(rows['originals'], 'row')}) after "
            f"{plural(compare['steps'], 'optimiser step')} each: {compare['lift']:+.3f}")
