"""What `expand` and `train` are asked to do, checked once, where they are made: the CLI, the
library and the demo build these and get the same one-line UsageError for a value out of range.
The choices are named here once; the CLI's help and checks read them from here.

A leaf module: it loads neither OpenCV nor torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from augpipe.engines import ENGINES
from augpipe.errors import UsageError, one_of
from augpipe.training.model import TASKS as MODEL_TASKS

# About 36 bytes a pixel at the peak of one image's augmentation (decode, transforms, encode):
# 25 megapixels keep a worker under about 1 GB.
DEFAULT_MAX_PIXELS = 25_000_000
MAX_COPIES = 1000  # a recipe's bound too
SPLIT_BY = ("content", "path")
DEVICES = ("auto", "cpu", "cuda", "mps")
FREEZE = ("features",)
TRAIN_TASKS = ("auto", *MODEL_TASKS)


def check_numbers(options, integers: tuple[str, ...], reals: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> None:
    """A library caller's ExpandOptions(shard_size="30KB") gets this one line, not a TypeError from
    the first comparison. NumPy's numbers, and a float holding a whole number where one is
    wanted, become Python's (they are written into the manifest's JSON)."""
    for name in (*integers, *reals):
        value = getattr(options, name)
        if value is None and name in optional:
            continue
        whole = name in integers
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
                and (not whole or float(value).is_integer()):
            object.__setattr__(options, name, int(value) if whole else float(value))
            continue
        what = "a whole number" if whole else "a finite number"
        raise UsageError(f"{type(options).__name__}({name}=...) takes {what}, not {value!r}")


# The manifest's `options` (what decides an output) as `augpipe expand` takes them, and the command
# line's defaults (its --shard-size 256MB is 256,000,000 bytes)
EXPAND_FLAGS = {"copies": "--copies", "val_fraction": "--val-fraction", "balance": "--balance",
                "repeat_threshold": "--repeat-threshold", "shard_size": "--shard-size", "max_pixels": "--max-pixels",
                "layout": "--layout", "split_by": "--split-by", "format": "--format",
                "voc_zero_based": "--voc-zero-based"}
_CLI_DEFAULTS = {"val_fraction": 0.1, "balance": False, "shard_size": 256_000_000,
                 "max_pixels": DEFAULT_MAX_PIXELS, "layout": "auto", "split_by": "content", "voc_zero_based": False}


_NONE = object()  # no default: always given


def expand_arguments(options: dict, keys=None) -> list[str]:
    """`augpipe expand`'s arguments that give these recorded options: `keys`' (every one, at its
    default too), or else those past the command line's defaults."""
    wanted = set(keys) if keys is not None else {k for k, v in options.items() if _CLI_DEFAULTS.get(k, _NONE) != v}
    args = []
    for key, flag in EXPAND_FLAGS.items():
        if key not in options or key not in wanted:
            continue
        value = options[key]
        if isinstance(value, bool):
            args += [flag] if value else []  # off: the flag left out
        elif value is not None:
            args += [flag, str(value)]
    return args


@dataclass(frozen=True)
class ExpandOptions:
    copies: int | None = None  # None: the recipe's
    workers: int | None = None  # None: the machine's cores
    seed: int = 0
    val_fraction: float = 0.1
    balance: bool = False
    shard_size: int = 256 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    strict: bool = False
    overwrite: bool = False
    progress: bool = True
    layout: str = "auto"  # auto | classes | splits: the scan checks it
    split_by: str = "content"  # SPLIT_BY
    engine: str = "local"  # ENGINES
    format: str = "auto"  # auto | a source format's name: the scan checks it
    voc_zero_based: bool = False  # VOC files with 0-based edges (else the devkit's 1-based pixels)
    repeat_threshold: float | None = None  # --balance's repeat factors (detection); None: plan.repeat_factors'

    def __post_init__(self):
        check_numbers(self, ("copies", "workers", "seed", "shard_size", "max_pixels"),
                      ("val_fraction", "repeat_threshold"), optional=("copies", "workers", "repeat_threshold"))
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be 1 or more, not {self.workers}")
        if self.copies is not None and not 0 <= self.copies <= MAX_COPIES:
            raise UsageError(f"--copies must be 0 to {MAX_COPIES:,} (as a recipe's copies)")
        if self.split_by not in SPLIT_BY:
            raise UsageError(f"--split-by is {one_of(SPLIT_BY)}, not '{self.split_by}'")
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"--val-fraction must be at least 0 and below 1, not {self.val_fraction}")
        if self.repeat_threshold is not None and not self.balance:
            raise UsageError("--repeat-threshold sets --balance's repeat factors: it needs --balance")
        if self.repeat_threshold is not None and not 0 < self.repeat_threshold <= 1:
            raise UsageError("--repeat-threshold is a share of images: above 0 and at most 1, "
                             f"not {self.repeat_threshold}")
        if self.shard_size < 1 or self.max_pixels < 1:
            raise UsageError("--shard-size and --max-pixels must be positive")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine '{self.engine}': choose {one_of(ENGINES)}")


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    arch: str | None = None  # None: the task's default (DEFAULT_ARCHS), or the --init checkpoint's
    size: int | None = None  # None: the task's default (DEFAULT_SIZES), or the checkpoint's
    seed: int = 0
    device: str = "auto"  # DEVICES
    compare: bool = False
    seeds: int = 1  # with compare: both runs with seed, seed + 1, ... (run.py's _other_seeds)
    init: str | None = None
    freeze: str | None = None  # None or FREEZE
    task: str | None = None  # None (or "auto"): the dataset's; else one of TRAIN_TASKS
    progress: bool = True
    log: object = field(default=print, repr=False)  # where progress lines go

    def __post_init__(self):
        check_numbers(self, ("epochs", "batch_size", "size", "seed", "seeds"), ("lr",), optional=("size",))
        for name in ("epochs", "batch_size", "seeds", "size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be above 0, not {self.lr}")
        if self.freeze is not None and self.freeze not in FREEZE:
            raise UsageError("--freeze takes 'features' (every layer but the final 1×1 classifier)")
        if self.device not in DEVICES:
            raise UsageError(f"--device is {one_of(DEVICES)}")
        if self.task is not None and self.task not in TRAIN_TASKS:
            raise UsageError(f"--task is one of {', '.join(TRAIN_TASKS)}; not '{self.task}'")
