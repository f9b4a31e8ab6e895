"""The sanity trainer: a tiny CNN on the shards, to show the data learns and what augmentation adds.

Needs the `train` extra (torch, matplotlib). The splits are decoded once into memory at
`size`×`size`: this is a check of the data, not a training framework. The task comes from the
dataset (classification, detection, segmentation; a detection dataset with at most one object an
image trains as localisation) or from --task; each task's trainer is a module of
augpipe/training/ over the shared loop. Everything that can be refused is refused before a model
is built or data read.
"""

from __future__ import annotations

import copy as copy_module
import json
import math
import os
import re
from dataclasses import asdict, replace
from pathlib import Path

from augpipe.errors import OutputError, SourceError, UsageError
from augpipe.options import TrainOptions
from augpipe.training.model import (DEFAULT_ARCH, DEFAULT_ARCHS, DEFAULT_SIZES, build_model, build_task_model,
                           classifier_index, format_table, layer_table, megabytes, memory_bytes, task_table)
from augpipe.training import task_class, task_module
from augpipe.training.base import plot_curves
from augpipe.training.bootstrap import MIN_IMAGES, images_needed
from augpipe.training.classification import at_chance as _at_chance, evaluate, load_split, plot_confusion
from augpipe.training.data import MEAN, STD, Split, check_dataset, plural, subset
from augpipe.training.loop import compare as _compare, fit, resolve_device

DEFAULT_SIZE = DEFAULT_SIZES["classification"]

__all__ = ["DEFAULT_ARCH", "DEFAULT_SIZE", "MEAN", "STD", "Split", "available_memory", "check_dataset",
           "check_memory", "evaluate", "fit", "layer_table", "load_split", "plot_confusion", "plural",
           "resolve_device", "subset", "summary_lines", "train"]


# ---------------------------------------------------------------- which task

def _objects_per_image(ds) -> int:
    """The most objects any training or validation image has (the object lists alone are read)."""
    import pyarrow.compute as pc

    most = 0
    for split in ("train", "validation"):
        table = ds.read(split, columns=["objects.category"])
        if table is not None and table.num_rows:
            most = max(most, int(pc.max(pc.list_value_length(table.column(0))).as_py() or 0))
    return most


def choose_task(ds, asked: str | None) -> tuple[str, str | None]:
    """(the task to train, a line saying why when it is not plain): the dataset's, or the one asked
    for when the dataset has what it needs (boxes for localisation and detection, masks for
    segmentation, image labels for classification): its kind says which tasks it feeds."""
    kind = ds.kind
    boxes = "detection" in kind.train_tasks
    if boxes and asked in (None, "auto", "localisation", "detection"):
        most = _objects_per_image(ds)
        if most == 0:
            what = "" if asked in (None, "auto") else f"--task {asked}: "
            raise SourceError(f"{what}this {kind.name} dataset has no boxes: none of its training or validation "
                              "images has an object (were the labels found? augpipe inspect shows the counts)")
    if asked in (None, "auto"):
        if not boxes:
            return kind.train_tasks[0], None
        name = "localisation" if most <= 1 else "detection"
        what = "at most one object an image" if most <= 1 else f"up to {most} objects an image"
        return name, f"task: {name} (a {kind.name} dataset with {what}; --task overrides)"
    if asked not in kind.train_tasks:
        raise UsageError(_cannot_feed(asked, kind))
    return asked, (f"task: {asked} (asked for; the dataset is {kind.name})" if asked != kind.name else None)


def _cannot_feed(asked: str, kind) -> str:
    """Why a dataset of this kind cannot feed the task asked for."""
    boxes = "detection" in kind.train_tasks
    if asked in ("localisation", "detection"):
        hint = " (class masks only)" if "segmentation" in kind.train_tasks else " (image labels only)"
        return f"--task {asked}: this {kind.name} dataset has no boxes{hint}"
    if asked == "segmentation":
        hint = (" (boxes without instance masks: expand from polygons, YOLO segments or RLE to have them)"
                if boxes else " (image labels only)")
        return f"--task segmentation: this {kind.name} dataset has no masks{hint}"
    other = "localisation or detection" if boxes else "segmentation"
    return f"--task classification: this {kind.name} dataset has no image labels: use --task {other}"


def task_classes(ds, task: str) -> list[str]:
    """The class names the task's network scores: a dataset of boxes and instance masks trained for
    segmentation gains a background class 0."""
    classes = list(ds.classes)
    if task == "segmentation" and "detection" in ds.kind.train_tasks:
        return ["background", *classes]
    return classes


# ---------------------------------------------------------------- checkpoints

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
        raise UsageError(f"--init {path}: not a model.pt torch can read ({type(exc).__name__}: {first})") from None
    if not (isinstance(ckpt, dict) and all(k in ckpt for k in CHECKPOINT_KEYS) and isinstance(ckpt["arch"], str)
            and isinstance(ckpt["size"], int) and isinstance(ckpt["state_dict"], dict)):
        raise UsageError(f"--init {path}: not a model.pt from augpipe train (needs {', '.join(CHECKPOINT_KEYS)})")
    return ckpt


def _same_arch(a: str, b: str, classes: int) -> bool:
    return a.replace("{classes}", str(classes)) == b.replace("{classes}", str(classes))


def resolve_arch(opts: TrainOptions, classes: int, log, task: str = "classification") -> tuple[str, int, dict | None]:
    """(arch, size, checkpoint): the options' (the task's defaults when not given), or with --init
    the checkpoint's, which a different --arch or --size contradicts."""
    if opts.init is None:
        return (DEFAULT_ARCHS[task] if opts.arch is None else opts.arch,
                DEFAULT_SIZES[task] if opts.size is None else opts.size, None)
    ckpt = load_checkpoint(opts.init)
    if ckpt.get("task", "classification") != "classification":
        raise UsageError(f"--init {opts.init}: a {ckpt['task']} model; --init takes a classification model")
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


# ---------------------------------------------------------------- memory

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


def check_memory(rows, size: int, batch: int, device, decoded_rows: int, row_bytes: int | None = None) -> None:
    """Refuses, before anything is allocated, a run whose training step (model.memory_bytes) and
    decoded splits (uint8 images, and the targets: `row_bytes` a row, in host memory) would not fit."""
    import torch

    step = memory_bytes(rows, size, batch)
    data = decoded_rows * (3 * size * size if row_bytes is None else row_bytes)
    if device.type == "cuda":
        needs = [(step, available_memory(device), f" on {device}"),
                 (data, available_memory(torch.device("cpu")), " on the host")]
    else:  # the CPU, and MPS's memory shared with it
        needs = [(step + data, available_memory(device), "")]
    for need, limit, where in needs:
        if limit is not None and need > limit:
            raise UsageError(f"memory: about {megabytes(step)} for a batch of {batch} and {megabytes(data)} for the "
                             f"decoded splits, more than the {megabytes(limit)} available{where}: "
                             f"use a smaller --batch-size, --size or fewer channels in --arch")


def _decoded_rows(manifest, compare: bool) -> int:
    """Rows decoded into memory: train, validation, and with --compare a copy of the originals."""
    counts = manifest.counts
    rows = sum(counts.get(s, {}).get("rows", 0) for s in ("train", "validation"))
    return rows + (counts.get("train", {}).get("originals", 0) if compare else 0)


def _row_bytes(task: str, rows, size: int, classes: int) -> int:
    """Host memory a decoded row takes: its image, and segmentation's mask or detection's target maps."""
    image = 3 * size * size
    if task == "segmentation":
        return image + size * size
    if task == "detection":
        f = next(r.size for r in rows if r.layer.name == "heatmap")
        return image + 4 * (classes + 5) * f * f
    return image


def freeze_features(model) -> list:
    head = classifier_index(model)
    for i, module in enumerate(model):
        for p in module.parameters():
            p.requires_grad = i == head
    return list(model[head].parameters())


def _plan(path, opts: TrainOptions) -> tuple[object, object, TrainOptions, object, dict | None]:
    """Everything that can be refused is, before a model is built or data read:
    (the dataset, the task, the options with task, arch and size settled, device, checkpoint)."""
    from augpipe.dataset import open_dataset

    if not 0 <= opts.seed < 2**64:  # as --help says (torch takes negatives too: one number, two spellings)
        raise UsageError(f"--seed {opts.seed}: torch's seeds are 64 bits: use a whole number from 0 to {2**64 - 1}")
    if opts.seeds > 1 and not opts.compare:
        raise UsageError("--seeds repeats --compare's two runs with more seeds: use it with --compare")
    if opts.seed + opts.seeds > 2**64:
        raise UsageError(f"--seed {opts.seed} --seeds {opts.seeds}: the last seed passes torch's 64 bits")
    device = resolve_device(opts.device)
    ds = open_dataset(path)
    name, note = choose_task(ds, opts.task)
    classes = task_classes(ds, name)
    min_classes = task_class(name).min_classes
    if len(classes) < min_classes:
        if name == "segmentation" and not classes:
            raise SourceError("segmentation needs the class names (classes.txt or _classes.csv beside the masks): "
                              "this dataset has none")
        raise SourceError(f"{len(classes)} class: training needs at least {'two' if min_classes == 2 else 'one'}")
    if opts.freeze is not None and opts.init is None:
        raise UsageError("--freeze needs --init: freezing random features would leave only the classifier to learn")
    if name != "classification" and (opts.init is not None or opts.freeze is not None):
        raise UsageError(f"--init and --freeze are for classification; the {name} trainer starts from random weights")
    arch, size, ckpt = resolve_arch(opts, len(classes), opts.log, name)
    opts = replace(opts, arch=arch, size=size, task=name)
    rows = task_table(name, arch, size, len(classes))
    if note:
        opts.log(note)
    for line in format_table(rows, size, batch=opts.batch_size):
        opts.log(line)
    check_memory(rows, size, opts.batch_size, device, _decoded_rows(ds.manifest, opts.compare),
                 _row_bytes(name, rows, size, len(classes)))
    return ds, task_class(name)(classes, size, rows), opts, device, ckpt


# ---------------------------------------------------------------- the output folder

MARKER = ".augpipe-train"  # in --out: train wrote this folder, a rerun may fill it again
OUTPUT_FILES = ("model.pt", "metrics.json", "curves.png", "confusion.png", "predictions.png")  # every task's


def claim_output(out: Path) -> list[str]:
    """Refuses an --out that train did not write. Train writes into a new or empty folder, or one
    an earlier run of train wrote (its marker lists the files it wrote; a run of augpipe 0.3 left
    no marker: a folder of train's file names alone whose metrics.json is train's is one too).
    Returns the earlier run's files, which the new run removes."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder: choose a new or empty folder")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not names:
        return []
    if MARKER in names:
        try:
            files = json.loads((out / MARKER).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            raise OutputError(f"--out {out}: its {MARKER} cannot be read: choose a new or empty folder") from None
        return [f for f in files if f in names and (out / f).is_file()]  # names in the folder, nothing beyond it
    if set(names) <= set(OUTPUT_FILES) and _train_metrics(out / "metrics.json"):
        return names
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise OutputError(f"--out {out} holds files augpipe train did not write ({shown}): choose a new or empty folder")


def _train_metrics(path: Path) -> bool:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and {"history", "arch", "size", "classes"} <= set(metrics)


def _mark(out: Path, files: list[str], complete: bool) -> None:
    (out / MARKER).write_text(json.dumps({"made_by": "augpipe train", "files": sorted(set(files)),
                                          "complete": complete}) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- the command

def train(path: str | Path, out: str | Path, opts: TrainOptions) -> dict:
    from augpipe.pipeline import check_not_nested

    out, log = Path(out), opts.log
    check_not_nested(str(path), str(out), "dataset")  # its readers would take the run's files for its own
    earlier = claim_output(out)
    ds, task, opts, device, ckpt = _plan(path, opts)
    classes = task.classes
    model = _new_model(task, opts, ckpt, log)
    train_data = task.load(ds, "train", opts.progress)
    val_data = task.load(ds, "validation", opts.progress)
    check_dataset(train_data, val_data, classes, task.min_classes)
    unscored = _unscored_classes(task, train_data, val_data)
    if unscored:
        log(f"warning: {unscored}")
    task.prepare(train_data, val_data, log)
    data = (train_data, val_data, opts.epochs * math.ceil(len(train_data) / opts.batch_size), device)
    what = "" if task.name == "classification" else f" {task.name}"
    log(f"training{what} on {device}: {plural(len(train_data), 'row')}, {len(val_data):,} validation, "
        f"{plural(len(classes), 'class')}, {plural(opts.epochs, 'epoch')} "
        f"({plural(data[2], 'step')} of {opts.batch_size})")
    history, pred, compared = _fit_both(model, task, opts, data)
    result = {"task": task.name, "arch": opts.arch, "size": opts.size, "classes": classes, "device": str(device),
              "options": _plain(opts), "history": history}
    if unscored:
        result["validation_warning"] = unscored
    if task.name == "classification" and _at_chance(history, len(classes)):
        result["warning"] = (f"training accuracy stays at chance ({history[-1]['train_acc']:.2f} for "
                             f"{len(classes)} classes): are the labels scrambled or the images blank?")
        log(f"warning: {result['warning']}")
    if compared is not None:
        result["compare"] = compared
        if opts.seeds > 1:
            compared["seeds"] = _other_seeds(task, opts, ckpt, data, compared["lift"])
    result.update(task.report(pred, val_data, train_data, history))
    no_better = _no_better_than_baseline(result)
    if no_better:
        result["warning"] = no_better
        log(f"warning: {no_better}")
    _write_outputs(out, model, task, result, val_data, pred, earlier)
    return result


def _no_better_than_baseline(result: dict) -> str | None:
    """Segmentation: a model whose best mean IoU is the baseline's has learnt nothing yet (a new
    user's 2 epochs scored exactly always predicting the background, and nothing said so)."""
    if result.get("task") != "segmentation" or result.get("warning"):
        return None
    best, b = result["best_val_miou"], result["baseline"]
    if best > b["mean_iou"] + 1e-6:
        return None
    return (f"the best mean IoU ({best:.3f}) is no better than always predicting '{b['class']}' "
            f"({b['mean_iou']:.3f}): the model has learnt nothing yet (more --epochs, or look at the masks)")


def _unscored_classes(task, train_data, val_data) -> str | None:
    """Classification: the classes training holds and validation none of (its accuracy, and the
    baseline's, say nothing of them)."""
    if task.name != "classification":
        return None
    held = {"train": set(train_data.y.tolist()), "validation": set(val_data.y.tolist())}
    missing = [task.classes[k] for k in sorted(held["train"] - held["validation"]) if 0 <= k < len(task.classes)]
    if not missing:
        return None
    named = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return (f"validation holds no row of {plural(len(missing), 'class')} ({named}): the accuracies below say "
            f"nothing of {'it' if len(missing) == 1 else 'them'}")


def _new_model(task, opts: TrainOptions, ckpt: dict | None, log):
    """The model's initial weights from --seed (and --init's, when given)."""
    import torch

    torch.manual_seed(opts.seed)
    if task.name == "classification":
        return make_model(opts.arch, opts.size, task.classes, ckpt, opts.init, log)
    return build_task_model(task.name, opts.arch, opts.size, len(task.classes))


def _fit_both(model, task, opts: TrainOptions, data: tuple) -> tuple[list[dict], object, dict | None]:
    """(history, the final model's validation predictions, and with --compare the run on the
    originals from the same initial weights and random stream, with the lift)."""
    import torch

    train_data, val_data, steps, device = data
    freeze = freeze_features if opts.freeze == "features" else None
    trainable = freeze(model) if freeze is not None else None
    initial = copy_module.deepcopy(model.state_dict())
    model.to(device)
    rng_state = (torch.get_rng_state(), torch.cuda.get_rng_state() if device.type == "cuda" else
                 torch.mps.get_rng_state() if device.type == "mps" else None)
    history = fit(model, task, train_data, val_data, steps, opts, device, "expanded", trainable)
    _, pred = task.evaluate(model, val_data, device, opts.batch_size)
    if not opts.compare:
        return history, pred, None
    return history, pred, _compare(model, task, initial, rng_state, train_data, val_data, steps, opts, device,
                                   history, pred, freeze)


def _other_seeds(task, opts: TrainOptions, ckpt: dict | None, data: tuple, lift: float) -> dict:
    """--seeds: both runs again from --seed + 1, + 2, ...: the lift of each, and their spread."""
    import numpy as np

    seeds, lifts = [opts.seed + i for i in range(opts.seeds)], [lift]
    for i, seed in enumerate(seeds[1:], start=2):
        opts.log(f"--seeds: seed {seed} ({i} of {len(seeds)})")
        again = replace(opts, seed=seed)
        lifts.append(_fit_both(_new_model(task, again, ckpt, lambda *a: None), task, again, data)[2]["lift"])
    return {"seeds": seeds, "lifts": lifts, "mean": float(np.mean(lifts)), "sd": float(np.std(lifts, ddof=1)),
            "min": min(lifts), "max": max(lifts)}


def _plain(opts: TrainOptions) -> dict:
    return {k: v for k, v in asdict(opts).items() if k not in ("log", "progress")}


def _write_outputs(out: Path, model, task, result: dict, val, pred, earlier: list[str]) -> None:
    """The run's files; the marker lists the earlier run's too until they are gone, so that a run
    cut short here leaves nothing a rerun would not remove."""
    import torch

    files = output_files(result)
    out.mkdir(parents=True, exist_ok=True)
    _mark(out, [*earlier, *files], complete=False)
    for name in set(earlier) - set(files):
        (out / name).unlink(missing_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "arch": result["arch"], "size": result["size"], "classes": result["classes"],
                "task": task.name, "mean": MEAN, "std": STD}, out / "model.pt")
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_curves(result, task.panels, out / "curves.png")
    task.draw(out, result, val, pred)
    _mark(out, files, complete=True)


def output_files(result: dict) -> list[str]:
    """What train wrote into --out, for the command's last line."""
    return ["model.pt", "metrics.json", *task_class(result.get("task", "classification")).pictures]


def summary_lines(result: dict) -> list[str]:
    lines = task_module(result.get("task", "classification")).summary_lines(result)
    if "compare" in result:
        lines.append(lift_line(result))
        guessing = _guessing(result)
        if guessing:
            lines.append(guessing)
        if "interval" in result["compare"]:  # a metrics.json from before intervals has none
            lines.append(interval_line(result["compare"], _scores(result)))
        if "seeds" in result["compare"]:
            lines.append(seeds_line(result["compare"]["seeds"]))
    return lines


def lift_line(result: dict) -> str:
    compare, rows = result["compare"], result["compare"]["rows"]
    key = compare.get("metric", "val_acc")
    expanded, originals = result["history"][-1][key], compare["originals"][-1][key]
    text = task_class(result.get("task", "classification")).headline_text
    return (f"augmentation lift: {text} {expanded:.3f} (expanded, {plural(rows['expanded'], 'row')}) "
            f"vs {originals:.3f} (originals, {plural(rows['originals'], 'row')}) after "
            f"{plural(compare['steps'], 'optimiser step')} each: {compare['lift']:+.3f}")


def _guessing(result: dict) -> str | None:
    """Classification: a model of the two that scores exactly always guessing the majority class
    has learnt nothing the accuracy shows; on a validation split of unequal classes its score is
    no measure of the other's (a new user's balanced set 'lost' 0.214 against such a model)."""
    baseline = result.get("majority_baseline")
    if baseline is None:
        return None
    key = result["compare"].get("metric", "val_acc")
    which = [name for name, score in (("expanded", result["history"][-1][key]),
                                      ("originals", result["compare"]["originals"][-1][key]))
             if abs(score - baseline) < 1e-9]
    if not which:
        return None
    return (f"note: the {' and the '.join(which)} model{'s score' if len(which) > 1 else ' scores'} what always guessing "
            f"'{result['majority_class']}' does ({baseline:.3f}): on validation images of unequal classes, accuracy "
            "favours such a model; confusion.png shows each class")


VERDICTS = {"lift": "augmentation helped, by more than the choice of validation images explains",
            "loss": "augmentation hurt, by more than the choice of validation images explains",
            "same": "no lift: the two models score alike on every resample of these images",
            "too_few_images": f"too few validation images to tell (at least {MIN_IMAGES}, better a few hundred)"}


def _scores(result: dict) -> tuple[float, float]:
    """The headline figure of the expanded model and of the originals-only one, at the end."""
    key = result["compare"].get("metric", "val_acc")
    return result["history"][-1][key], result["compare"]["originals"][-1][key]


def interval_line(compare: dict, scores: tuple[float, float] | None = None) -> str:
    """The lift's interval and what it says, plainly: a difference of an image or two is not a lift;
    two models both at 1 (or both at 0) cannot show one."""
    interval, n = compare["interval"], compare["validation_images"]
    shown = (f"  {interval['level']:.0%} interval [{interval['low']:+.3f}, {interval['high']:+.3f}] on "
             f"{plural(n, 'validation image')} (paired bootstrap; one image is {1 / n:.3f} of them)")
    if scores is not None and scores[0] == scores[1] and scores[0] in (0, 1):
        why = ("both models score 1.000: at the ceiling, these validation images are too easy to show a lift"
               if scores[0] == 1 else "both models score 0.000: neither learned; train longer (--epochs) before comparing")
        return f"{shown}: {why}"
    if compare["verdict"] in VERDICTS:
        seeds = "" if "seeds" in compare or compare["verdict"] not in ("lift", "loss") else \
            " (training's own randomness is not in it: --seeds N repeats both runs)"
        return f"{shown}: {VERDICTS[compare['verdict']]}{seeds}"
    needed = images_needed(compare["lift"], interval, n)
    more = (f"; about {needed:,} would be needed to tell a lift of {abs(compare['lift']):.3f} from none, were it to hold"
            if needed is not None and needed > n else "")
    return f"{shown}: not distinguishable from no lift, the validation set is too small to tell{more}"


def seeds_line(spread: dict) -> str:
    seeds = spread["seeds"]
    return (f"  over {len(seeds)} seeds (--seed {seeds[0]} to {seeds[-1]}): lifts "
            f"{', '.join(f'{v:+.3f}' for v in spread['lifts'])}; mean {spread['mean']:+.3f}, standard deviation "
            f"{spread['sd']:.3f}, from {spread['min']:+.3f} to {spread['max']:+.3f}")
