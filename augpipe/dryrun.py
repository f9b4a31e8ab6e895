"""A recipe run on test images before a dataset is: every transform alone at p=1, then all of
them together at p=1, then the recipe as it will run, at the smallest and the largest image size.

`parse_recipe` checks what can be checked without images; this finds what only running shows
(a crop larger than the images, copies and originals of different sizes, a transform too slow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from augpipe.errors import RecipeError
from augpipe.limits import worst_cost
from augpipe.recipe import Recipe, build_transform, has_mixes, import_albumentations, is_mix, mix_of, silenced

REFERENCE_SIZE = (256, 256)  # (width, height): the test image when no sizes are given
# The most one transform may take on the reference image (on the test images, when all are
# smaller): about 15 s a megapixel. PiecewiseAffine at its defaults, a Python loop a pixel, takes
# ~1.8 s there (~27 s a megapixel) and is refused; the next slowest at their defaults take ~0.2 s.
LEAF_SECONDS = 1.0
# The most one copy may take there, each transform applied as often as the recipe allows
# (SomeOf(n, replace=True) applies a child n times).
COPY_SECONDS = 10.0
SAMPLES = 8  # runs of the recipe as it will run, to see the sizes its copies come out at
MULTIPLE = 32  # the proposed output.resize's sides are multiples of this (most networks' total stride)

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class RecipeCheck:
    warnings: tuple[str, ...] = ()
    # (width, height) that smaller images lack: they fail, and are skipped at run time
    min_size: Size | None = None


@dataclass
class _Trial:
    size: Size
    failure: str | None = None
    failed: tuple[str, dict] | None = None  # (label, spec) of the transform that failed alone
    outputs: set[Size] = field(default_factory=set)  # sizes the copies come out at


def check_recipe(recipe: Recipe, sizes: Iterable[Size] | None = None, kind: Any = None) -> RecipeCheck:
    """Run `recipe` on test images of the smallest and the largest (width, height) in `sizes`
    (a 256×256 image when none), with a made-up target of the dataset's kind (a box, a mask).
    RecipeError when it fails at every size, or when one transform is too slow; warnings for
    sizes it fails at and for rows that will differ in size."""
    from augpipe.targets import kind_for

    _KIND[0] = kind or kind_for("classification")
    every = [(int(w), int(h)) for w, h in sizes or ()]
    given = sorted(set(every), key=lambda s: (_pixels(s), s))
    tests = list(dict.fromkeys([given[0], given[-1]])) if given else [REFERENCE_SIZE]
    # Timed on the reference image before larger ones: a too slow transform is refused before it
    # spends minutes on a large image. Its failures there count only when it is a test size.
    on_reference = _pixels(tests[-1]) >= _pixels(REFERENCE_SIZE)
    samples = SAMPLES if tests[0] == REFERENCE_SIZE else 0
    timing = _trial(recipe, REFERENCE_SIZE, timed=True, samples=samples) if on_reference else None
    trials = [timing if size == REFERENCE_SIZE and timing else
              _trial(recipe, size, timed=not on_reference, samples=0 if i else SAMPLES)
              for i, size in enumerate(tests)]
    passed = [t for t in trials if t.failure is None]
    if not passed:
        raise RecipeError(f"{recipe.path}: {trials[-1].failure}")
    warns: list[str] = []
    min_size = None
    for trial in trials:
        need = _needs(trial)
        if need:
            min_size = min_size or need
            warns.append(f"images smaller than {_show(need)} will be skipped: {trial.failed[0]} needs {_show(need)}")
        elif trial.failure:
            warns.append(f"images of {_show(trial.size)} will be skipped: {trial.failure}")
    size_warning = _size_warning(recipe, passed, every)
    return RecipeCheck(tuple(warns + ([size_warning] if size_warning else [])), min_size)


# ---------------------------------------------------------------- running

def _trial(recipe: Recipe, size: Size, timed: bool = False, samples: int = SAMPLES) -> _Trial:
    """Each transform alone at p=1 (all of them, each timed when `timed`), then, unless one
    failed, all together at p=1, then `samples` runs as the recipe will run."""
    trial = _Trial(size)
    image = _test_image(size)
    seconds = []
    for label, spec in _leaves(recipe.transforms):
        started, cpu = time.perf_counter(), time.process_time()
        failure = _failure(label, lambda: _run_leaf({**spec, "p": 1.0}, image, recipe), size)
        # the lesser of the clock and this process's CPU time: a machine busy with other work (or
        # stalled on its disk) stretches the one, a transform's own threads the other; a slow
        # transform is slow by both
        seconds.append(min(time.perf_counter() - started, time.process_time() - cpu))
        if timed and seconds[-1] > LEAF_SECONDS:
            raise RecipeError(f"{recipe.path}: {label}: too slow: {seconds[-1]:.1f} s on a {_show(size)} test image "
                              f"(at most {LEAF_SECONDS:g} s)")
        if failure and trial.failure is None:
            trial.failure, trial.failed = failure, (label, spec)
    if timed:
        _check_copy_time(recipe, seconds, size)
    if trial.failure is not None:
        return trial
    trial.failure = _failure("the transforms together (each at p=1)",
                             lambda: _keep_size(trial, _run_forced(recipe, image)), size)
    for seed in range(samples if trial.failure is None else 0):
        trial.failure = _failure("the recipe", lambda: _keep_size(trial, _sample(recipe, image, seed)), size)
        if trial.failure:
            break
    return trial


def _check_copy_time(recipe: Recipe, seconds: list[float], size: Size) -> None:
    leaves = _leaves(recipe.transforms)
    each = iter(t for (_, spec), t in zip(leaves, seconds) if not is_mix(spec))
    steps = sum(t for (_, spec), t in zip(leaves, seconds) if is_mix(spec))
    worst = steps + worst_cost([build_transform(s) for s in recipe.transforms if not is_mix(s)], lambda leaf: next(each))
    if worst > COPY_SECONDS:
        raise RecipeError(f"{recipe.path}: too slow: one copy can take up to {worst:.0f} s on a {_show(size)} "
                          f"test image, its transforms applied as often as the recipe allows (at most {COPY_SECONDS:g} s)")


def _failure(label: str, run: Any, size: Size) -> str | None:
    try:
        with silenced():
            run()
    except Exception as exc:  # any failure here is the recipe's, reported as such
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"{label}: fails on a {_show(size)} image: {type(exc).__name__}: {first_line}"
    return None


_KIND: list = [None]  # the target kind of the check under way (check_recipe sets it)


def _run(transforms: list, image: Any, recipe: Recipe) -> Any:
    import random

    import cv2
    import numpy as np

    A = import_albumentations()
    kind = _KIND[0]
    compose = A.Compose(transforms, p=1.0, mask_interpolation=cv2.INTER_NEAREST, **kind.compose_options(recipe))
    compose.set_random_state(np.random.default_rng(0), random.Random(0))
    target = kind.example(image.shape[1], image.shape[0])
    return compose(image=image.copy(), **kind.inputs(target))["image"]


def _sample(recipe: Recipe, image: Any, seed: int) -> Any:
    from augpipe.sample import apply_recipe

    kind = _KIND[0]
    return apply_recipe(image.copy(), recipe, seed, kind, kind.example(image.shape[1], image.shape[0]),
                        _test_donors(recipe, image))[0]


def _run_leaf(spec: dict, image: Any, recipe: Recipe) -> Any:
    if not is_mix(spec):
        return _run([build_transform(spec)], image, recipe)
    return _sample(_only(recipe, (spec,), "leaf"), image, 0)


def _run_forced(recipe: Recipe, image: Any) -> Any:
    if not has_mixes(recipe):
        return _run([build_transform(_forced(s)) for s in recipe.transforms], image, recipe)
    return _sample(_only(recipe, tuple(_forced(s) for s in recipe.transforms), "forced"), image, 0)


def _only(recipe: Recipe, specs: tuple, label: str) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, transforms=specs, sha256=f"{recipe.sha256}#check-{label}-{hash(str(specs))}")


def _test_donors(recipe: Recipe, image: Any) -> list:
    """Donors for the check: the test image turned half a turn, with the kind's made-up target."""
    import numpy as np

    from augpipe.sample import Donor

    kind = _KIND[0]
    turned = np.ascontiguousarray(image[::-1, ::-1])
    donor = Donor("(test image)", "", turned, kind.example(image.shape[1], image.shape[0]))
    return [[donor] * mix_of(s).donors() for s in recipe.transforms if is_mix(s)]


def _keep_size(trial: _Trial, out: Any) -> None:
    trial.outputs.add((int(out.shape[1]), int(out.shape[0])))


def _test_image(size: Size) -> Any:
    import numpy as np

    width, height = size
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _leaves(specs: Iterable[dict], prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for i, spec in enumerate(specs, start=1):
        if "transforms" in spec:
            out += _leaves(spec["transforms"], f"{prefix}{i}.")
        else:
            out.append((f"transform {prefix}{i} {spec['__class_fullname__']}", spec))
    return out


def _forced(spec: dict) -> dict:
    """Every transform and compose at p=1 (children of a OneOf become equally likely)."""
    out = {**spec, "p": 1.0}
    if "transforms" in spec:
        out["transforms"] = [_forced(c) for c in spec["transforms"]]
    return out


# ---------------------------------------------------------------- reading the results

def _needs(trial: _Trial) -> Size | None:
    """The size a fixed-size crop needs, when that is what failed."""
    if trial.failed is None:
        return None
    t = build_transform(trial.failed[1])
    for w, h in (("width", "height"), ("x_max", "y_max")):
        need = getattr(t, w, None), getattr(t, h, None)
        if all(isinstance(v, int) for v in need) and (need[0] > trial.size[0] or need[1] > trial.size[1]):
            return need
    return None


def _size_warning(recipe: Recipe, passed: list[_Trial], sizes: list[Size]) -> str | None:
    """Rows of different sizes cannot be batched ("stack expects each tensor to be equal size")."""
    if recipe.output.resize is not None:
        return None
    first = passed[0]
    copies = sorted(first.outputs, key=lambda s: (_pixels(s), s)) if recipe.copies else [first.size]
    width, height = suggest_size(sizes or [REFERENCE_SIZE])
    why = ("the median image's scale and aspect" if sizes else f"the {_show(REFERENCE_SIZE)} test image's size; "
           "expand proposes your images' median scale and aspect") + f", in multiples of {MULTIPLE}"
    fix = (f"rows of different sizes do not stack into one batch tensor (a DataLoader's default collate fails: "
           f"\"stack expects each tensor to be equal size\"; augpipe's collate gives a list): add "
           f"output: {{resize: {{height: {height}, width: {width}}}}} ({why}; every image is stretched to it, "
           f"or crop first, e.g. A.RandomResizedCrop)")
    sizes_differ = len(set(sizes)) > 1
    shown = " or ".join(_show(s) for s in copies[:3]) + (" or ..." if len(copies) > 3 else "")
    fixed = [s for s in copies if s != first.size]
    image = f"a {_show(first.size)} image" if sizes else f"the {_show(first.size)} test image"
    if not sizes and len(fixed) == 1:  # `augpipe check` alone: the user's images may be that size
        fix += (f"; images of {_show(fixed[0])} give one size only (expand checks your own images' sizes, "
                "and warns only where they differ)")
    if recipe.keep_original and copies != [first.size]:
        return f"originals keep their size but copies of {image} come out at {shown}: {fix}"
    if len(copies) > 1:
        return f"copies of {image} come out at different sizes ({shown}): {fix}"
    ends = {s for t in passed for s in t.outputs}
    if sizes_differ and (recipe.keep_original or len(ends) > 1):
        return f"the images differ in size and so will the rows: {fix}"
    return None


def suggest_size(sizes: list[Size]) -> Size:
    """The `output.resize` (width, height) to propose for images of these sizes: the median
    image's scale (√(width·height)) at the median aspect (width/height), each side rounded to the
    nearest multiple of 32. Most images keep their shape and their detail (only those above the
    median are shrunk, rounding aside); a square dataset gets a square. The smallest image's size,
    proposed before, shrank most images, often by half or more."""
    import numpy as np

    width, height = np.asarray(sizes, dtype=np.float64).reshape(-1, 2).T
    scale, aspect = _median(np.sqrt(width * height)), _median(width / height)
    return _multiple(scale * np.sqrt(aspect)), _multiple(scale / np.sqrt(aspect))


def _median(values):
    """np.median's value (the middle one, or the mean of the two) without its first call's import
    of numpy.ma, 10 ms of every command's set-up."""
    import numpy as np

    k = len(values) // 2
    if len(values) % 2:
        return np.partition(values, k)[k]
    low, high = np.partition(values, (k - 1, k))[k - 1:k + 1]
    return (low + high) / 2


def _multiple(side: float) -> int:
    return max(MULTIPLE, int(round(side / MULTIPLE)) * MULTIPLE)


def _pixels(size: Size) -> int:
    return size[0] * size[1]


def _show(size: Size) -> str:
    return f"{size[0]}×{size[1]}"
