"""Recipes: a YAML file that names albumentations transforms, validated into a `Recipe`.

A recipe is resolved once at the edge (`load_recipe`) into plain data that pickles to
workers; each process builds its own `albumentations.Compose` from it (`build_compose`).
"""

from __future__ import annotations

import array
import contextlib
import difflib
import functools
import hashlib
import importlib
import inspect
import json
import os
import sys
import threading
import types
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from augpipe import limits
from augpipe.bundled import bundled_dir, bundled_recipes  # noqa: F401 (imported from here too)
from augpipe.errors import RecipeError
from augpipe.lean_steps import lean_steps, near_identity
from augpipe.limits import check_built, check_caps, check_cost, check_numbers, check_size, missing_targets

# Names in albumentations' registry that are bases, or composes and parameters that are not
# transforms (what a transform needs besides the image: `limits.required_targets`).
_NOT_FOR_RECIPES = {
    "BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "BaseCompose",
    "Compose", "ReplayCompose", "BboxParams", "KeypointParams",
    "MaxSizeTransform",  # the base of LongestMaxSize and SmallestMaxSize: fails on its own
}
# These change the pixel type; augpipe writes 8-bit images.
_FLOAT_OUTPUT = {"Normalize", "ToFloat", "FromFloat"}
_FULLNAME = "__class_fullname__"
# Composes and multi-image steps hold random state: each thread its own (the studio renders on
# threads), the most recently used few kept (the studio makes a recipe an edit)
_LOCAL = threading.local()
# warnings.catch_warnings swaps process-wide state: two threads inside it at once (the studio's
# renders) can each restore the other's, and a recording one can leave every later warning
# swallowed. Ours take turns.
_WARNINGS = threading.RLock()


def _new_warnings_lock() -> None:
    global _WARNINGS
    _WARNINGS = threading.RLock()  # a process forked while another thread held it would wait forever


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_warnings_lock)


@contextlib.contextmanager
def silenced(record: bool = False):
    """Warnings ignored within, or, with `record`, each kept in the list this gives (not shown)."""
    with _WARNINGS, warnings.catch_warnings(record=record) as caught:
        warnings.simplefilter("always" if record else "ignore")
        yield caught


class ResizeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    height: PositiveInt
    width: PositiveInt


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(95, ge=1, le=100)
    resize: ResizeSpec | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _jpg_is_jpeg(cls, v: Any) -> Any:
        return "jpeg" if isinstance(v, str) and v.lower() in ("jpg", "jpeg") else v


class BboxSpec(BaseModel):
    """Which boxes survive a transform (albumentations' BboxParams thresholds; boxes are clipped
    to the image first)."""

    model_config = ConfigDict(extra="forbid")
    min_visibility: float = Field(0.0, ge=0, le=1)  # share of the box's area still in the image
    min_area: float = Field(0.0, ge=0)  # pixels
    min_width: float = Field(0.0, ge=0)
    min_height: float = Field(0.0, ge=0)


class _RecipeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str = ""
    copies: int = Field(2, ge=0, le=1000)
    keep_original: bool = True
    output: OutputSpec = OutputSpec()
    bbox_params: BboxSpec = BboxSpec()
    # How rotations move boxes: `ellipse` (a box's inscribed ellipse, rotated: boxes grow 1.25× at
    # 45° where `largest_box` grows them 2.25×) for transforms that take it and do not set it
    rotate_method: Literal["largest_box", "ellipse"] = "ellipse"
    transforms: list[Any] = Field(default_factory=list)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: plain, picklable data."""

    name: str
    description: str
    copies: int
    keep_original: bool
    output: OutputSpec
    transforms: tuple[dict, ...]  # albumentations' serialized form, one dict a transform
    text: str
    sha256: str
    path: str
    notes: tuple[str, ...] = field(default=())  # defaults taken quietly, shown by `check`
    warnings: tuple[str, ...] = field(default=())
    bbox_params: BboxSpec = field(default_factory=BboxSpec)
    rotate_method: str = "ellipse"
    # the top-level keys target kinds add (keypoints: keypoint_flip), as given
    kind_options: dict = field(default_factory=dict)


# ---------------------------------------------------------------- finding recipes

def resolve_recipe_path(ref: str | Path) -> Path:
    """A path to a file, or the name of a bundled recipe (`flips`, `flips.yaml`, `recipes/flips.yaml`)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.is_dir():
        raise RecipeError(f"recipe '{ref}' is a folder, not a recipe file")
    if path.exists():
        raise RecipeError(f"recipe '{ref}' is not a regular file (a device, pipe or socket)")
    if path.parent in (Path("."), Path("recipes")):
        stem = path.name.removesuffix(".yaml").removesuffix(".yml")
        candidate = bundled_dir() / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    names = ", ".join(p.stem for p in bundled_recipes())
    raise RecipeError(f"recipe '{ref}' not found: no such file, and no bundled recipe of that name ({names})")


# ---------------------------------------------------------------- loading

def load_recipe(ref: str | Path) -> Recipe:
    path = resolve_recipe_path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from None
    return parse_recipe(text, str(path))


def parse_recipe(text: str, where: str = "<recipe>") -> Recipe:
    """Validate a recipe without running it (`augpipe.dryrun.check_recipe` runs it on test images)."""
    data = _read_yaml(text, where)
    transform = data.get("transform")
    if isinstance(transform, dict) and _FULLNAME in transform:
        data = _from_albumentations_save(data, where)
    check_size(data, where)
    try:
        model = _recipe_model().model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{where}: {_top_level_message(exc)}") from None
    if not model.transforms and model.copies:
        raise RecipeError(f"{where}: 'transforms' is empty: name at least one transform, or set copies: 0")
    notes: list[str] = []
    warns: list[str] = []
    specs = tuple(
        _check_item(item, f"transform {i}", where, notes, warns)
        for i, item in enumerate(model.transforms, start=1)
    )
    check_cost([(f"transform {i} {s[_FULLNAME]}", build_transform(s)) for i, s in enumerate(specs, start=1)
                if not is_mix(s)], where)
    recipe = Recipe(
        name=model.name or Path(where).stem,
        description=model.description.strip(),
        copies=model.copies,
        keep_original=model.keep_original,
        output=model.output,
        transforms=specs,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        path=where,
        notes=tuple(notes),
        warnings=tuple(warns),
        bbox_params=model.bbox_params,
        rotate_method=model.rotate_method,
        kind_options={k: getattr(model, k) for k in _kind_fields() if k in model.model_fields_set},
    )
    return recipe


@functools.lru_cache(maxsize=1)
def _kind_fields() -> dict:
    """The top-level recipe keys target kinds declare: {key: (type, default)}."""
    from augpipe.targets import registry

    return {k: v for kind in registry().values() for k, v in kind.recipe_fields().items()}


@functools.lru_cache(maxsize=1)
def _recipe_model() -> type[BaseModel]:
    from pydantic import create_model

    return create_model("RecipeModel", __base__=_RecipeModel, **_kind_fields())


def _read_yaml(text: str, where: str) -> dict:
    if len(text) > limits.MAX_TEXT_CHARS:
        raise RecipeError(f"{where}: the recipe is {len(text)} characters long; at most {limits.MAX_TEXT_CHARS}")
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise RecipeError(f"{where}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{where}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a YAML mapping with a 'transforms' list")
    return data


def _from_albumentations_save(data: dict, where: str) -> dict:
    """A file written by `A.save(compose, path, data_format="yaml")`."""
    extra = set(data) - {"transform", "__version__", "name", "description", "copies", "keep_original", "output",
                         "rotate_method", *_kind_fields()}
    if extra:
        raise RecipeError(f"{where}: unknown top-level key '{sorted(extra)[0]}'")
    compose = dict(data["transform"])
    out = {k: v for k, v in data.items() if k not in ("transform", "__version__")}
    out["transforms"] = compose.get("transforms") or []
    bbox = compose.get("bbox_params")
    # the thresholds; the format and label fields are augpipe's own (COCO, in pixels), and so
    # are keypoint_params: the target kind sets them
    if bbox:
        out["bbox_params"] = {k: bbox[k] for k in ("min_visibility", "min_area", "min_width", "min_height")
                              if bbox.get(k) is not None}
    return out


def _top_level_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        known = list(_recipe_model().model_fields) if len(err["loc"]) == 1 else []
        hint = _did_you_mean(str(err["loc"][-1]), known)
        where = "top-level key" if len(err["loc"]) == 1 else "key"
        return f"unknown {where} '{loc}'{hint}"
    return f"field '{loc}': {err['msg']}"


def _did_you_mean(word: str, options: list[str]) -> str:
    # a name that is the word's first part (fill for fill_value) first, then the close spellings
    close = [o for o in options if word.startswith(o + "_") or o.startswith(word + "_")]
    close += [c for c in difflib.get_close_matches(word, options, n=3, cutoff=0.6) if c not in close]
    close = close[:3]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _not_a_parameter(here: str, key: str, name: str, shown: list[str], known: list[str]) -> str:
    """A field the step does not take: the close spellings, or else its parameters (a name an
    older albumentations used, var_limit for GaussNoise's std_range, is close to none)."""
    hint = _did_you_mean(key, known)
    if not hint:
        names = [k for k in shown if k not in ("always_apply", "strict")]
        hint = f" (it takes {', '.join(names)}: augpipe transforms {name})" if names else ""
    return f"{here}: field '{key}' is not a parameter of {name}{hint}"


# ---------------------------------------------------------------- albumentations

def import_albumentations():
    """albumentations without its PyTorch helpers.

    When torch is installed, `import albumentations` imports it too (about 1 s and 0.5 GB in
    every worker) for ToTensorV2, which augpipe never uses. The helpers are blocked only while
    albumentations itself loads: `import albumentations.pytorch` still works afterwards.
    In a process augpipe runs from its start, less (`lean_import`).
    """
    module = sys.modules.get("albumentations")
    if module is not None and _IMPORTED:
        return module
    with _IMPORTING:  # threads (the studio's) wait for it whole, not a half-loaded module
        module = _import_albumentations()
        _IMPORTED.append(True)
    return module


_IMPORTING = threading.Lock()
_IMPORTED: list = []
_UNUSED = ["albumentations.pytorch"]  # blocked while albumentations loads
_LAZY: list[str] = []  # loaded on first use, not while albumentations loads


def lean_import() -> None:
    """For a process augpipe runs from its start (the command line, its workers), albumentations
    loads without what augpipe's runs rarely or never use: its Hugging Face Hub helpers (with
    httpx, trio, filelock...: a third of its import time) for `push_to_hub` and `from_pretrained`,
    and SciPy's special functions (a fifth: one transform, RingingOvershoot, calls one) until they
    are first used. A library caller's albumentations is loaded whole."""
    if "huggingface_hub" not in _UNUSED:
        _UNUSED.append("huggingface_hub")
    if "scipy.special" not in _LAZY:
        _LAZY.append("scipy.special")
    _LEAN_PROCESS.append(True)


_LEAN_PROCESS: list = []


def _import_albumentations():
    if "albumentations" in sys.modules:
        return sys.modules["albumentations"]
    blocked = [name for name in _UNUSED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # an import of it raises ImportError
    for name in _LAZY:
        _load_on_first_use(name)
    no_check = _no_update_check()
    try:
        with _schemas_built_on_first_use(bool(_LEAN_PROCESS)):
            import albumentations
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
        if no_check is not None and sys.modules.get(_CHECK_VERSION) is no_check:
            del sys.modules[_CHECK_VERSION]
            _load_on_first_use(_CHECK_VERSION)  # the real one, at its first use (as albumentations.check_version too)
    return albumentations


_CHECK_VERSION = "albumentations.check_version"


def _no_update_check() -> types.ModuleType | None:
    """While albumentations loads with its update check off (augpipe turns it off: no network
    from a data pipeline), its check_version module stands in as a no-op: the real one imports
    urllib.request and http.client, a quarter of albumentations' own import, for a check that does
    not run."""
    if sys.modules.get(_CHECK_VERSION) is not None or \
            os.environ.get("NO_ALBUMENTATIONS_UPDATE", "").lower() not in {"true", "1"}:
        return None
    stand_in = types.ModuleType(_CHECK_VERSION)
    stand_in.check_for_updates = lambda *args, **kwargs: None
    sys.modules[_CHECK_VERSION] = stand_in
    return stand_in


@contextlib.contextmanager
def _schemas_built_on_first_use(lean: bool):
    """While albumentations loads in a lean process, pydantic builds each model's validator when
    the model is first used, not when its class is made (pydantic's `defer_build`, made the default
    for the while through its config defaults): building the hundred-odd transforms' schemas took
    60 ms of a 175 ms import, and a run uses a few. Nothing changes where pydantic keeps no such
    default."""
    try:
        from pydantic._internal._config import config_defaults
    except ImportError:
        config_defaults = {}
    if not lean or "defer_build" not in config_defaults:
        yield
        return
    before = config_defaults["defer_build"]
    config_defaults["defer_build"] = True
    try:
        yield
    finally:
        config_defaults["defer_build"] = before


def _load_on_first_use(name: str) -> None:
    """Module `name` (a package's submodule) stands in sys.modules, and on its package, as a
    `_FirstUse` until one of its attributes is read."""
    import importlib.util

    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    parent, _, child = name.rpartition(".")
    stand_in = _FirstUse(name)
    sys.modules[name] = stand_in
    setattr(sys.modules[parent], child, stand_in)


class _FirstUse(types.ModuleType):
    """Loads the module it stands for when an attribute is first read, once, under a lock
    (importlib's LazyLoader is not thread-safe before Python 3.12: threads saw half a module),
    and from then on holds the module's attributes as its own."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_first_use"] = threading.Lock()

    def __getattr__(self, attr: str):
        with self.__dict__["_first_use"]:
            if "_loaded" not in self.__dict__:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]  # the import below loads the real one
                module = importlib.import_module(self.__name__)
                self.__dict__.update(module.__dict__)
                self.__dict__["_loaded"] = True
        try:
            return self.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}") from None


# ---------------------------------------------------------------- one transform

def _split_item(item: Any, label: str, where: str) -> tuple[str, dict]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and _FULLNAME in item:
        params = {k: v for k, v in item.items() if k != _FULLNAME}
        return str(item[_FULLNAME]).rsplit(".", 1)[-1], params
    if isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RecipeError(f"{where}: {label} {name}: parameters must be a mapping like {{p: 0.5}}")
        return str(name), dict(params)
    raise RecipeError(f"{where}: {label}: write each transform as 'Name: {{param: value}}'")


@functools.lru_cache(maxsize=1)
def allowed_transforms() -> dict[str, type]:
    """Every albumentations transform or compose a recipe may name, by class name."""
    import_albumentations()  # registers every transform
    from albumentations.core.composition import BaseCompose
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY
    from albumentations.core.transforms_interface import BasicTransform

    out = {}
    for name, cls in SERIALIZABLE_REGISTRY.items():
        if (
            name in _NOT_FOR_RECIPES or name.startswith(("_", "Base")) or name.endswith("3D")
            or not cls.__module__.startswith("albumentations.")
            or not issubclass(cls, (BasicTransform, BaseCompose))
        ):
            continue
        out[name] = cls
    return out


def _is_compose(cls: type) -> bool:
    import_albumentations()
    from albumentations.core.composition import BaseCompose

    return issubclass(cls, BaseCompose)


def init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The parameters a recipe may give a transform (a compose's include `transforms`)."""
    params = dict(inspect.signature(cls.__init__).parameters)
    for skip in ("self", "args", "kwargs", "strict", "always_apply"):
        params.pop(skip, None)
    return params


def refusal(name: str, params: dict | None = None) -> str | None:
    """Why a recipe may not use this transform at all, or None."""
    if name == "Lambda":
        return "Lambda runs arbitrary Python code and cannot be used in a recipe"
    if name in _FLOAT_OUTPUT:
        return "makes float pixels; augpipe writes 8-bit images (normalise in your data loader instead)"
    cls = allowed_transforms().get(name)
    missing = missing_targets(cls, params) if cls is not None else set()
    if missing:
        needs = ", ".join(repr(t) for t in sorted(missing))
        given = ", ".join(repr(t) for t in sorted(limits.PROVIDED_TARGETS))
        return f"needs {needs}, which augpipe does not give (it gives transforms only {given})"
    return None


def _check_item(item: Any, label: str, where: str, notes: list[str], warns: list[str]) -> dict:
    """Validate one transform and return its albumentations-serialized form."""
    name, params = _split_item(item, label, where)
    here = f"{where}: {label} {name}"
    if name in _mixes():
        return _check_mix(name, params, label, here, notes)
    if name in ("Lambda", *_FLOAT_OUTPUT):
        raise RecipeError(f"{here}: {refusal(name)}")
    allowed = allowed_transforms()
    cls = allowed.get(name)
    if cls is None:
        hint = _did_you_mean(name, list(allowed))
        raise RecipeError(f"{here}: unknown transform{hint}")
    known = init_parameters(cls)
    schema = getattr(cls, "InitSchema", None)
    if schema is not None:
        known.update({k: None for k in schema.model_fields if k not in ("strict", "always_apply")})
    for key in params:
        if key not in known:
            raise RecipeError(_not_a_parameter(here, key, name, list(init_parameters(cls)), list(known)))
    reason = refusal(name, params)
    if reason:
        raise RecipeError(f"{here}: {reason}")
    for key, value in params.items():
        if key != "transforms":
            check_numbers(value, here, key)
    check_caps(name, params, here)
    children: list[dict] = []
    if _is_compose(cls):
        kids = params.pop("transforms", None)
        if not isinstance(kids, list) or not kids:
            raise RecipeError(f"{here}: field 'transforms': a {name} needs a list of transforms")
        children = [_check_item(k, f"{label}.{j}", where, notes, warns) for j, k in enumerate(kids, start=1)]
    transform, said = _construct(cls, name, params, children, here)
    notes += [f"{label} {name}: albumentations says: {line}" for line in said]
    check_built(transform, here)
    if "p" not in params:
        notes.append(f"{label} {name}: p not given, default p={transform.p} is used")
    warns.extend(_fixed_range_warnings(transform, params, f"{label} {name}"))
    spec = {_FULLNAME: name, **params}
    if children:
        spec["transforms"] = children
    return spec


def _check_mix(name: str, params: dict, label: str, here: str, notes: list[str]) -> dict:
    """A multi-image step (augpipe.mixing): at the top level only, its parameters its own."""
    if "." in label:
        raise RecipeError(f"{here}: a step that takes other images belongs at the top level of 'transforms', "
                          "not inside a compose (OneOf, SomeOf, ...)")
    known = list(_mixes()[name].Params.model_fields)
    for key, value in params.items():
        if key not in known:
            raise RecipeError(_not_a_parameter(here, key, name, known, known))
        check_numbers(value, here, key)
    check_caps(name, params, here)
    try:
        _mixes()[name].Params.model_validate(params)
    except ValidationError as exc:
        raise RecipeError(f"{here}: {_field_message(exc)}") from None
    except ValueError as exc:
        raise RecipeError(f"{here}: {str(exc).splitlines()[0]}") from None
    if "p" not in params:
        notes.append(f"{label} {name}: p not given, default p={mix_of({_FULLNAME: name}).p} is used")
    return {_FULLNAME: name, **params}


def _mixes() -> dict:
    from augpipe.mixing import registry

    return registry()


def is_mix(spec: dict) -> bool:
    """Whether a transform's spec is a multi-image step (augpipe.mixing)."""
    return spec[_FULLNAME] in _mixes()


MAX_CACHED = 256


def mix_of(spec: dict):
    """The step a spec names, built once per thread (Mosaic holds a Compose, with random state)."""
    key = json.dumps(spec, sort_keys=True)
    mixes = getattr(_LOCAL, "mixes", None)
    if mixes is None or len(mixes) > MAX_CACHED:  # the studio makes a recipe an edit
        mixes = _LOCAL.mixes = {}
    if key not in mixes:
        cls = _mixes()[spec[_FULLNAME]]
        mixes[key] = cls(cls.Params.model_validate({k: v for k, v in spec.items() if k != _FULLNAME}))
    return mixes[key]


def has_mixes(recipe: Recipe) -> bool:
    # `parts` is cut once a recipe: asked for every copy, this is a lookup
    return len(parts(recipe)) > 1


_PARTS: dict[str, list] = {}


def parts(recipe: Recipe) -> list[tuple[Recipe | None, dict | None]]:
    """The recipe cut at its multi-image steps: (the single-image transforms before a step, as a
    recipe of their own or None, the step's spec), the last with None for the step."""
    key = recipe.sha256
    if key not in _PARTS:
        if len(_PARTS) > MAX_CACHED:
            _PARTS.clear()
        out, run = [], []
        for spec in [*recipe.transforms, None]:
            if spec is not None and not is_mix(spec):
                run.append(spec)
                continue
            out.append((_sub_recipe(recipe, run, f"part{len(out)}") if run else None, spec))
            run = []
        _PARTS[key] = out
    return _PARTS[key]


def before_step(recipe: Recipe, step: int) -> Recipe | None:
    """The single-image transforms before multi-image step `step` (0-based): a donor's own."""
    specs = [s for part, _ in parts(recipe)[:step + 1] if part is not None for s in part.transforms]
    return _sub_recipe(recipe, specs, f"before{step}") if specs else None


def _sub_recipe(recipe: Recipe, specs: list[dict], label: str) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, transforms=tuple(specs), sha256=f"{recipe.sha256}#{label}")


def _construct(cls: type, name: str, params: dict, children: list[dict], here: str) -> tuple[Any, list[str]]:
    """The transform, and the first line of each warning albumentations gave as it was made (a
    deprecation: ShiftScaleRotate is a special case of Affine), each once."""
    kids = [build_transform(c) for c in children]
    try:
        with silenced(record=True) as caught:
            transform = cls(kids, **params) if _is_compose(cls) else cls(**params)
        return transform, list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught if str(w.message)))
    except ValidationError as exc:
        raise RecipeError(f"{here}: {_field_message(exc)}") from None
    except (TypeError, ValueError) as exc:
        # albumentations re-raises its pydantic errors as ValueError(str(error)) from error
        if isinstance(exc.__cause__, ValidationError):
            raise RecipeError(f"{here}: {_field_message(exc.__cause__)}") from None
        raise RecipeError(f"{here}: {str(exc).splitlines()[0]}") from None


def _field_message(exc: ValidationError) -> str:
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        fld = str(err["loc"][0]) if err["loc"] else "?"
        msg = "required parameter is missing" if err["type"] == "missing" else err["msg"]
        if msg not in by_field.setdefault(fld, []):
            by_field[fld].append(msg)
    fld, msgs = next(iter(by_field.items()))
    if fld == "border_mode":
        msgs[-1] += f" (OpenCV's border modes: {BORDER_MODES})"
    return '; or '.join(msgs) if fld == "?" else f"field '{fld}': {'; or '.join(msgs)}"


BORDER_NAMES = {0: "BORDER_CONSTANT", 1: "BORDER_REPLICATE", 2: "BORDER_REFLECT", 3: "BORDER_WRAP",
                4: "BORDER_REFLECT_101"}  # OpenCV's, as albumentations takes them
BORDER_MODES = "0 constant (fill), " + ", ".join(f"{k} {v[7:].lower()}" for k, v in BORDER_NAMES.items() if k)


def _fixed_range_warnings(transform: Any, given: dict, label: str) -> list[str]:
    """A scalar that albumentations turns into a range (v, v) is a fixed value, not a random one."""
    out = []
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            continue
        resolved = getattr(transform, key, None)
        ranges = list(resolved.values()) if isinstance(resolved, dict) else [resolved]
        if any(isinstance(r, tuple) and len(r) == 2 and r[0] == r[1] for r in ranges):
            out.append(
                f"{label}: {key}={value} is a fixed value, not a random range: "
                f"write [{-value}, {value}] (or [lo, hi]) for a random one"
            )
    return out


# ---------------------------------------------------------------- building

def build_transform(spec: dict) -> Any:
    cls = allowed_transforms()[spec[_FULLNAME]]
    params = {k: v for k, v in spec.items() if k not in (_FULLNAME, "transforms")}
    with silenced():
        if _is_compose(cls):
            return cls([build_transform(c) for c in spec["transforms"]], **params)
        return cls(**params)


MAX_COMPOSES = 16


def build_compose(recipe: Recipe, kind: Any = None) -> Any:
    """The recipe's Compose for a target kind (classification when None), built once per thread
    (it holds random state). Masks move with nearest-neighbour interpolation (class indices stay
    indices); for boxes, rotations default to the recipe's `rotate_method`."""
    if kind is None:
        from augpipe.targets import kind_for

        kind = kind_for("classification")
    key = (recipe.sha256, kind.name, tuple(kind.albumentations_targets))
    composes = getattr(_LOCAL, "composes", None)
    if composes is None:
        composes = _LOCAL.composes = OrderedDict()
    compose = composes.get(key)
    if compose is not None:
        composes.move_to_end(key)
    else:
        import cv2

        # once, not per image: a catch_warnings() around every call costs more than some transforms;
        # under the lock, or another thread's catch_warnings would take the filter away on its way out
        with _WARNINGS:
            warnings.filterwarnings("ignore", category=UserWarning, module=r"albumentations\.")
        specs = kind.compose_transforms(recipe)
        options = kind.compose_options(recipe)
        with silenced():
            compose = compose_class()([build_transform(s) for s in specs], p=1.0, save_applied_params=True,
                                      mask_interpolation=cv2.INTER_NEAREST, **options)
        composes[key] = compose
        while len(composes) > MAX_COMPOSES:
            composes.popitem(last=False)
    return compose


_COMPOSE_CLASS: list = []


def compose_class() -> type:
    """albumentations' Compose with its box processor's conversions in and out and its filter
    after each step done by `lean_box_processor`: the same arithmetic on the same arrays, without
    the generic layers around each (they cost detection a third of its speed at 320 px). The
    steps themselves, and so the geometry, are albumentations' own.

    (It once skipped the filter after a step that left the boxes as they were. That is not the
    same: a box a crop leaves wholly outside passes one filter, clipped to no area, and a second
    drops it. It skips the filter only for the very boxes the filter last gave back unchanged,
    when no step of its own with a function for boxes has run since: filtered again, those come
    back unchanged.)"""
    if not _COMPOSE_CLASS:
        A = import_albumentations()
        from albumentations.core.utils import get_shape

        class Compose(A.Compose):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                lean_steps(self.transforms)
                boxes = self.processors.get("bboxes")
                lean = lean_box_processor()
                self._lean = None
                if type(boxes) is lean.__base__ and lean.covers(boxes.params):
                    boxes.__class__ = lean  # in place: the steps and the per-step checks hold this object
                    lean_affine_boxes(self.transforms)
                    self._lean = boxes
                    self._plain_keys = _plain_keys(boxes.params.label_fields)

            def __call__(self, *args, **data):
                if self._lean is None:
                    return super().__call__(*args, **data)
                self._lean.trusted = None
                try:
                    return super().__call__(*args, **data)
                finally:
                    self._lean.trusted = _OUTSIDE

            def preprocess(self, data: dict) -> None:
                if not (self._lean is not None and data.keys() <= self._plain_keys and self.main_compose
                        and not self.strict and isinstance(data.get("image"), np.ndarray)):
                    return super().preprocess(data)
                # one image and boxes: no shapes to compare, no lists of arrays to stack
                self._preprocess_processors(data)
                return None

            def check_data_post_transform(self, data: dict) -> dict:
                lean = self._lean
                if lean is None or self.check_each_transform != (lean,) or self._additional_targets:
                    return super().check_data_post_transform(data)
                shape = get_shape(data)
                boxes = data.get("bboxes", _OUTSIDE)  # the one field this check filters
                if boxes is not _OUTSIDE and not (boxes is lean.trusted and shape == lean.trusted_shape):
                    data["bboxes"] = lean.filter(boxes, shape)  # (trusted: it would give them back as they are)
                return data

            def _track_transform_params(self, transform, data) -> None:
                super()._track_transform_params(transform, data)
                # a step that ran with a function for boxes may have changed them, even in place: the
                # filter looks again (a step that did not run, or for pixels only, passed them on)
                if self._lean is not None and not (isinstance(transform, A.BasicTransform) and (
                        not transform.params or "bboxes" not in transform._key2func)):
                    self._lean.trusted = None

        _COMPOSE_CLASS.append(Compose)
    return _COMPOSE_CLASS[0]


def _plain_keys(label_fields) -> frozenset:
    """The keys of a call that our Compose's `preprocess` takes without albumentations' checks
    (one image, its boxes and their labels); none where a label field is named as one of
    albumentations' targets ("mask", "images"...), whose checks it would then skip."""
    from albumentations.core import composition as C

    targets = (C.CHECKED_SINGLE | C.CHECKED_MULTI | C.CHECKED_VOLUME | C.CHECKED_MASK3D | C.CHECK_BBOX_PARAM
               | C.CHECK_KEYPOINTS_PARAM)
    if targets & set(label_fields):
        return frozenset()
    return frozenset({"image", "applied_transforms", "bboxes", *label_fields})


_LEAN: list = []


def lean_box_processor() -> type:
    """albumentations' BboxProcessor for what augpipe gives it (COCO boxes in pixels as one float
    array, clipped, label fields beside them), its work done with the same numpy operations in
    the same order and types as albumentations' `convert_bboxes_to_albumentations`, `check_bboxes`,
    `filter_bboxes` and `convert_bboxes_from_albumentations`, so each result is the same to the
    bit (tests/test_recipe.py compares them on random arrays, and whole Composes on many seeds).
    Any other input (no boxes, a list, other columns) takes albumentations' own path."""
    if not _LEAN:
        import_albumentations()
        from albumentations.core.bbox_utils import BboxProcessor, check_bboxes
        from albumentations.core.utils import get_shape

        class LeanBboxProcessor(BboxProcessor):
            @staticmethod
            def covers(params) -> bool:
                return (params.format == "coco" and params.clip and not params.filter_invalid_bboxes
                        and params.max_accept_ratio is None and bool(params.label_fields))

            def preprocess(self, data: dict) -> None:
                boxes = data.get("bboxes")
                if not (isinstance(boxes, np.ndarray) and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes)
                        and boxes.dtype.kind == "f" and all(k not in data for k in self._additional_names())
                        and self._numeric_labels()):
                    return super().preprocess(data)  # the first call settles how labels are encoded
                shape = get_shape(data)
                self.is_sequence_input["bboxes"] = False
                key = _preprocess_key(boxes, shape, self.params.label_fields,
                                      [data.get(name) for name in self.params.label_fields])
                if key is not None and self._converted is not None and self._converted[0] == key:
                    for name in self.params.label_fields:  # as process_field takes them
                        data.pop(name)
                    data["bboxes"] = self._converted[1].copy()
                    return None
                # as convert_bboxes_to_albumentations: the columns as float32 (boxes and labels, as
                # np.hstack(...).astype(np.float32) rounds them), corners, then normalised in float64
                out = np.empty((len(boxes), 4 + len(self.params.label_fields)), np.float32)
                out[:, :4] = boxes
                for k, name in enumerate(self.params.label_fields):
                    self._validate_label_field_length(data, "bboxes", name)
                    out[:, 4 + k] = self.label_manager.process_field("bboxes", name, data.pop(name)).reshape(-1)
                out[:, 2:4] += out[:, :2]
                corners = out[:, :4].astype(float)
                corners /= _filter_constants(shape["width"], shape["height"], 4, "<f8", 0, 0)[1]  # x / float(width)
                out[:, :4] = corners
                if len(out) <= FEW_BOXES:  # np.clip's rule with scalar bounds, on Python floats
                    rows = [[0.0 if v < 0.0 else 1.0 if v > 1.0 else v for v in row] for row in out[:, :4].tolist()]
                    out[:, :4] = rows  # float32 values: exact
                    ordered = all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in rows)
                else:
                    np.clip(out[:, :4], 0, 1, out=out[:, :4])
                    ordered = _ordered(out)
                if not ordered:  # a corner not a number, or of no width or height
                    check_bboxes(out)  # albumentations' own error
                data["bboxes"] = out
                if key is not None:
                    self._converted = (key, out.copy())
                return None

            def _additional_names(self) -> list[str]:
                return [k for k in self.data_fields if k != "bboxes"]

            # the last boxes `preprocess` converted: (what they and their labels were, the result).
            # An image's copies convert the same boxes, each after the same steps as the last
            _converted = None
            _filtered = None  # {(boxes, image size): what the filter gave back}, the last few
            # boxes the filter gave back as they were, untouched since (our Compose says so, in a
            # call, until a step of its own runs): filtered again, they would come back as they are.
            # Only our Compose's own checks and `postprocess` skip on it: a nested Compose's steps
            # are not vouched for until it has finished (then its step resets it)
            trusted, trusted_shape = _OUTSIDE, None

            def filter(self, data: np.ndarray, shape) -> np.ndarray:
                """The filter's result for boxes it was given lately (the same boxes, after a step
                that did not move them, or in an image's next copy) is given back again; boxes it
                gave back bit for bit unchanged are given back as they are. Filtering twice is
                not always filtering once: a box a crop leaves wholly outside passes one filter,
                clipped to no area, and the next drops it."""
                what = (data.dtype.str, data.shape, data.tobytes())
                p = self.params
                key = (*what, *shape.items(), p.min_area, p.min_visibility, p.min_width, p.min_height)
                seen = self._filtered
                if seen is None:
                    seen = self._filtered = {}
                got = seen.get(key)
                if got is not None:
                    out = data if got is _UNCHANGED else got.copy()
                else:
                    out = lean_filter(data, shape, p.min_area, p.min_visibility, p.min_width, p.min_height)
                    got = seen[key] = _UNCHANGED if (out.dtype.str, out.shape, out.tobytes()) == what else out.copy()
                    if len(seen) > FILTERED_KEPT:
                        del seen[next(iter(seen))]
                if self.trusted is not _OUTSIDE:
                    self.trusted, self.trusted_shape = (data, dict(shape)) if got is _UNCHANGED else (None, None)
                return data if got is _UNCHANGED else out

            def postprocess(self, data: dict) -> dict:
                boxes = data.get("bboxes")
                if not (isinstance(boxes, np.ndarray) and boxes.ndim == 2 and len(boxes)
                        and boxes.shape[1] == 4 + len(self.params.label_fields)
                        and not self.is_sequence_input.get("bboxes", True)
                        and all(k not in data for k in self._additional_names())):
                    return super().postprocess(data)
                shape = get_shape(data)
                if not (boxes is self.trusted and shape == self.trusted_shape):
                    boxes = self.filter(boxes, shape)
                if not len(boxes):
                    data["bboxes"] = boxes
                    for name in self.params.label_fields:
                        data[name] = self.label_manager.handle_empty_data()
                    return data
                if len(boxes) <= FEW_BOXES and boxes.dtype == np.float64 and self._plain_labels():
                    return self._few_out(data, boxes, float(shape["width"]), float(shape["height"]))
                if not _ordered(boxes):  # clipped to [0, 1] by the filter: in range unless not a number
                    check_bboxes(boxes)
                # as convert_bboxes_from_albumentations to COCO: in pixels (float64), x, y, w, h
                pixels = boxes[:, :4] * _filter_constants(shape["width"], shape["height"], 4, "<f8", 0, 0)[1]
                pixels[:, 2:4] -= pixels[:, :2]
                for k, name in enumerate(self.params.label_fields):
                    data[name] = self.label_manager.restore_field("bboxes", name, boxes[:, 4 + k])
                data["bboxes"] = pixels.astype(boxes.dtype, copy=False)
                return data

            def _numeric_labels(self) -> bool:
                """Every label field was seen before, as numbers (cast to float32 as they are)."""
                fields = self.label_manager.metadata.get("bboxes", {})
                return all((m := fields.get(name)) is not None and m.is_numerical for name in self.params.label_fields)

            def _plain_labels(self) -> bool:
                """Every label field came in as a list of numbers (restored as the list of floats)."""
                fields = self.label_manager.metadata.get("bboxes", {})
                return all((m := fields.get(name)) is not None and m.is_numerical and m.dtype is None
                           and m.input_type is list for name in self.params.label_fields)

            def _few_out(self, data: dict, boxes: np.ndarray, w: float, h: float) -> dict:
                """`postprocess` after its filter on a few float64 boxes, in Python floats."""
                rows = boxes.tolist()
                if not all(r[2] > r[0] and r[3] > r[1] for r in rows):
                    check_bboxes(boxes)
                for k, name in enumerate(self.params.label_fields):
                    data[name] = [r[4 + k] for r in rows]
                data["bboxes"] = np.array([[x0 * w, y0 * h, x1 * w - x0 * w, y1 * h - y0 * h]
                                           for x0, y0, x1, y1, *_ in rows], dtype=np.float64)
                return data

        _LEAN.append(LeanBboxProcessor)
    return _LEAN[0]


EPSILON = 1e-7  # albumentations' filter_bboxes's
FILTERED_KEPT = 8  # the filter's results a box processor keeps (`filter`)
_UNCHANGED = object()  # the filter gave its boxes back as they were
_OUTSIDE = object()  # no Compose call of ours vouches for what the filter is given


def _preprocess_key(boxes: np.ndarray, shape: dict, names, labels: list):
    """What decides `preprocess`'s result for these boxes: their bytes, the image's size, and
    each label field's values; None (not kept) unless every label field is a list of Python ints
    (as augpipe passes them: no -0.0 equal to 0.0, nothing a caller changes in place)."""
    if not all(type(field) is list and all(type(v) is int for v in field) for field in labels):
        return None
    return (boxes.dtype.str, boxes.shape, boxes.tobytes(), *shape.items(), tuple(names),
            *(tuple(field) for field in labels))


def _ordered(boxes: np.ndarray) -> bool:
    """Every box's x_max past its x_min and y_max past its y_min (False for a corner that is not
    a number): with corners clipped to [0, 1], what albumentations' `check_bboxes` asks."""
    return bool((boxes[:, 2:4] > boxes[:, 0:2]).all())


def lean_filter(boxes: np.ndarray, shape: dict, min_area: float, min_visibility: float, min_width: float,
                min_height: float) -> np.ndarray:
    """albumentations' `filter_bboxes` (no aspect-ratio limit), operation for operation: the
    boxes clipped to the image, those too small or too little visible dropped. The x and y of a
    step are one operation on a pair of columns (the same arithmetic, element by element, in the
    same types: half the numpy calls), the constants made once an image size."""
    if len(boxes) == 0:
        return np.array([], dtype=np.float32).reshape(0, 4)
    height, width = shape["height"], shape["width"]
    if boxes.dtype not in (np.float32, np.float64) or type(width) is not int or type(height) is not int:
        from albumentations.core.bbox_utils import filter_bboxes  # other types: its own arithmetic

        return filter_bboxes(boxes, shape, min_area, min_visibility, min_width, min_height)
    if len(boxes) <= FEW_BOXES:  # the areas too in Python floats
        return _few_boxes(boxes, None, float(width), float(height), min_area, min_visibility, min_width, min_height)
    sides, scale, limits = _filter_constants(width, height, boxes.shape[1], boxes.dtype.str, min_width, min_height)
    # ((x1 - x0) * width) * ((y1 - y0) * height), in the boxes' own type (width is a weak scalar)
    extent = boxes[:, 2:4] - boxes[:, 0:2]
    extent *= sides
    areas = extent[:, 0] * extent[:, 1]
    if len(boxes) <= FEW_BOXES:
        return _few_boxes(boxes, areas, float(width), float(height), min_area, min_visibility, min_width, min_height)
    # clip_bboxes: in pixels (float64), clipped, normalised again
    clipped = boxes * scale
    for columns, side in (([0, 2], width), ([1, 3], height)):  # as clip_bboxes: by scalars (-0.0 stays)
        clipped[:, columns] = np.clip(clipped[:, columns], 0, side)
    clipped[:, :4] /= scale[:4]  # x / float(width)
    pixels = clipped[:, 0:4] * scale[:4]  # x0 * w, y0 * h, x1 * w, y1 * h with float w, h
    clipped_areas = (clipped[:, 2:4] - clipped[:, 0:2]) * scale[:2]
    clipped_areas = clipped_areas[:, 0] * clipped_areas[:, 1]
    keep = ((areas >= EPSILON) & (clipped_areas >= min_area - EPSILON)
            & (clipped_areas / (areas + EPSILON) >= min_visibility)
            & ((pixels[:, 2:4] - pixels[:, 0:2]) >= limits).all(axis=1))
    if keep.all():
        return clipped
    kept = clipped[keep]
    return np.array([], dtype=np.float32).reshape(0, 4) if len(kept) == 0 else kept


FEW_BOXES = 16  # up to this many, the filter's float64 arithmetic is done in Python


def _round32(values: list[float]) -> list[float]:
    """Python floats rounded to float32 (to nearest, ties to even), as numpy casts them. A float32
    sum, difference or product worked out in doubles and rounded so is float32's own result:
    doubles carry more than twice float32's precision, so rounding twice changes nothing."""
    return array.array("f", values).tolist()


def _few_boxes(boxes: np.ndarray, areas: np.ndarray | None, w: float, h: float, min_area: float,
               min_visibility: float, min_width: float, min_height: float) -> np.ndarray:
    """`lean_filter` after its areas (in the boxes' own type, and so their sum with EPSILON; None:
    worked out here, in Python floats rounded as the boxes' type rounds): the rest is float64 arithmetic, done on
    Python floats (IEEE doubles, numpy's float64: the same results operation for operation), a
    box at a time, in place of two dozen numpy calls on a few rows. np.clip's rule with scalar
    bounds (albumentations' `clip_bboxes`): a value below 0 becomes 0.0, one above the side the
    side, any other stays (-0.0 and NaN too)."""
    rows = boxes.tolist()
    if areas is not None:
        epsilon = float(areas.dtype.type(EPSILON))  # `areas >= EPSILON` compares in the areas' type
        area_list, shrunk_list = areas.tolist(), (areas + EPSILON).tolist()
    elif boxes.dtype == np.float64:
        epsilon = EPSILON
        area_list = [((r[2] - r[0]) * w) * ((r[3] - r[1]) * h) for r in rows]
        shrunk_list = [a + EPSILON for a in area_list]
    else:  # float32: each operation in doubles, rounded to float32 (exactly float32's own result)
        epsilon, w32, h32 = _round32([EPSILON, w, h])
        n = len(rows)
        sides = _round32([r[2] - r[0] for r in rows] + [r[3] - r[1] for r in rows])
        sides = _round32([v * w32 for v in sides[:n]] + [v * h32 for v in sides[n:]])
        area_list = _round32([a * b for a, b in zip(sides[:n], sides[n:])])
        shrunk_list = _round32([a + epsilon for a in area_list])
    min_area, min_width, min_height = min_area - EPSILON, min_width - EPSILON, min_height - EPSILON
    kept = []
    for (x0, y0, x1, y1, *labels), area, shrunk in zip(rows, area_list, shrunk_list):
        x0, y0, x1, y1 = x0 * w, y0 * h, x1 * w, y1 * h
        x0 = (0.0 if x0 < 0.0 else w if x0 > w else x0) / w
        y0 = (0.0 if y0 < 0.0 else h if y0 > h else y0) / h
        x1 = (0.0 if x1 < 0.0 else w if x1 > w else x1) / w
        y1 = (0.0 if y1 < 0.0 else h if y1 > h else y1) / h
        clipped_area = ((x1 - x0) * w) * ((y1 - y0) * h)
        if (area >= epsilon and clipped_area >= min_area and clipped_area / shrunk >= min_visibility
                and x1 * w - x0 * w >= min_width and y1 * h - y0 * h >= min_height):
            kept.append([x0, y0, x1, y1, *[v * 1.0 for v in labels]])
    if not kept:
        return np.array([], dtype=np.float32).reshape(0, 4)
    return np.array(kept, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _filter_constants(width: int, height: int, columns: int, dtype: str, min_width: float, min_height: float):
    """[width, height] in the boxes' type; [w, h, w, h, 1, ...] in float64 (`clip_bboxes`'s
    scale, its clip bounds and divisor, and `denormalize_bboxes`'s float w, h); the limits on
    width and height less EPSILON. Read-only: they are shared."""
    sides = np.array([width, height], dtype=np.dtype(dtype))
    scale = np.array([width, height, width, height, *[1] * (columns - 4)], dtype=float)
    limits = np.array([min_width - EPSILON, min_height - EPSILON], dtype=float)
    for a in (sides, scale, limits):
        a.flags.writeable = False
    return sides, scale, limits


def lean_affine_boxes(transforms) -> None:
    """Point the box step of every Affine, ShiftScaleRotate, SafeRotate and Rotate (without
    `crop_border`) among `transforms` at `lean_bboxes_affine`: albumentations' `bboxes_affine` in
    half its time (it took a sixth of a detection copy's time at 320 px)."""
    A = import_albumentations()
    for t in transforms:
        if isinstance(t, A.BaseCompose):  # as lean_steps walks them (ColorJitter's list of functions is no step)
            lean_affine_boxes(t.transforms)
        elif "bboxes" in getattr(t, "_key2func", {}) and _affine_step(t, A):
            t._key2func["bboxes"] = functools.partial(_lean_affine_step, t)


def _affine_step(t, A) -> bool:
    """Whether t's `apply_to_bboxes` is albumentations' `bboxes_affine` on the step's own shape."""
    method = type(t).apply_to_bboxes
    return method is A.Affine.apply_to_bboxes or (method is A.Rotate.apply_to_bboxes and not t.crop_border)


def _lean_affine_step(t, bboxes: np.ndarray, bbox_matrix: np.ndarray, output_shape=None, **params) -> np.ndarray:
    shape = params["shape"][:2]
    return lean_bboxes_affine(bboxes, bbox_matrix, t.rotate_method, shape, t.border_mode,
                              shape if output_shape is None else output_shape)


@functools.cache
def _affine_parts() -> tuple:
    """albumentations' 360 sines and cosines of the ellipse method (float32, as it makes them), its
    reflected border modes and its own `bboxes_affine`: made and imported once, not each call."""
    from albumentations.augmentations.geometric.functional import bboxes_affine
    from albumentations.core.type_definitions import REFLECT_BORDER_MODES

    angles = np.radians(np.arange(0, 360, dtype=np.float32))
    return np.sin(angles), np.cos(angles), frozenset(REFLECT_BORDER_MODES), bboxes_affine


def lean_bboxes_affine(bboxes: np.ndarray, matrix: np.ndarray, rotate_method: str, image_shape, border_mode: int,
                       output_shape) -> np.ndarray:
    """albumentations' `bboxes_affine` (with `bboxes_affine_ellipse`, `bboxes_affine_largest_box`,
    `apply_affine_to_points`, `validate_bboxes` and the (de)normalisation), the same operations
    on the same types in the same order, so each result is the same to the bit (the points'
    matrix product is the same call on the same array); what it does not cover (reflected
    borders, a matrix that is not an affine 3 × 3 of floats) takes albumentations' own path.
    tests/test_recipe.py compares the two on random arrays."""
    if len(bboxes) == 0:
        return bboxes
    _, _, reflecting, theirs = _affine_parts()
    if (border_mode in reflecting or rotate_method not in ("ellipse", "largest_box") or matrix.shape != (3, 3)
            or matrix.dtype != np.float64 or matrix[2].tolist() != [0.0, 0.0, 1.0]):
        return theirs(bboxes, matrix, rotate_method, image_shape, border_mode, output_shape)
    if near_identity(matrix):  # np.allclose(matrix, I)
        return bboxes
    h, w = image_shape[:2]
    boxes = bboxes * _filter_constants(w, h, bboxes.shape[1], "<f8", 0, 0)[1]  # denormalize_bboxes: [w, h, w, h, 1...]
    out = _ellipse_bounds(boxes, matrix) if rotate_method == "ellipse" else None
    if out is None:
        out = _moved_bounds(_ellipse_points(boxes) if rotate_method == "ellipse" else _corner_points(boxes), matrix,
                            boxes)
    out[:, 4:] = boxes[:, 4:]
    rows, cols = output_shape[:2]
    # validate_bboxes: the boxes with a part on the canvas
    if not all(x1 > 0 and y1 > 0 and x0 < cols and y0 < rows for x0, y0, x1, y1 in out[:, :4].tolist()):
        x0, y0, x1, y1 = out[:, 0], out[:, 1], out[:, 2], out[:, 3]
        out = out[(x1 > 0) & (y1 > 0) & (x0 < cols) & (y0 < rows)]
    out[:, :4] /= _filter_constants(cols, rows, 4, "<f8", 0, 0)[1]  # normalize_bboxes: x / float(cols)
    return out


def _moved_bounds(points: np.ndarray, matrix: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`apply_affine_to_points` on each box's points, then each box's least and largest x and y:
    an array shaped as `boxes` (its first 4 columns set), of the type np.column_stack gives."""
    moved = points.reshape(-1, 3) @ matrix.T  # [x, y, 1] @ M.T, then / z
    z = moved[:, 2:]
    if (z == 1.0).all():  # an affine matrix on finite points: / 1.0 changes nothing, to the bit
        moved = moved[:, :2]
    else:
        small = np.abs(z) < np.finfo(moved.dtype).eps
        z[small] = np.sign(z[small]) * np.finfo(moved.dtype).eps
        moved = moved[:, :2] / z
    moved = moved.reshape(len(boxes), -1, 2)
    # each column reduced along a strided axis, as albumentations does: numpy's element-by-element
    # loop in both, so a tie of 0.0 and -0.0 goes the same way
    x, y = moved[:, :, 0], moved[:, :, 1]
    out = np.empty(boxes.shape, np.result_type(moved.dtype, boxes.dtype))
    x.min(axis=1, out=out[:, 0])
    y.min(axis=1, out=out[:, 1])
    x.max(axis=1, out=out[:, 2])
    y.max(axis=1, out=out[:, 3])
    return out


COLUMN_BOXES = 16  # up to this many boxes a call, `_ellipse_bounds`; more, `_moved_bounds`


def _ellipse_bounds(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
    """`_moved_bounds` of `_ellipse_points` with the points as 3 rows, not 360 × N rows of 3:
    writing them, moving them and reducing them run along memory (18 us for 5 boxes, not 29). The
    product is the same products summed in the same order, M @ [x; y; 1] for [x, y, 1] @ M.T,
    given the same bits by this machine's BLAS for as many points (`_rows_product_agrees` tries
    it once a process). The least and largest of a row are the same values whatever order numpy
    goes through it in, but for a tie of 0.0 and -0.0 and for NaN: a bound that is either takes
    the whole path (None), as does anything else unusual (float32 boxes, more than COLUMN_BOXES,
    a z not 1)."""
    n = len(boxes)
    if boxes.dtype != np.float64 or n > COLUMN_BOXES or not _rows_product_agrees():
        return None
    sin, cos = _affine_parts64()
    half = (boxes[:, 2:4] - boxes[:, 0:2]) / 2  # the same operations as `_ellipse_points`, x and y at once
    centre = boxes[:, 0:2] + half
    rows = np.empty((3, n, len(sin)))
    np.multiply(half[:, 0:1], sin, out=rows[0])
    rows[0] += centre[:, 0:1]
    np.multiply(half[:, 1:2], cos, out=rows[1])
    rows[1] += centre[:, 1:2]
    rows[2] = 1
    moved = matrix @ rows.reshape(3, -1)
    if not (moved[2] == 1.0).all():
        return None
    moved = moved[:2].reshape(2, n, -1)
    out = np.empty(boxes.shape, np.float64)
    out[:, 0:2] = moved.min(axis=2).T
    out[:, 2:4] = moved.max(axis=2).T
    if not all(v != 0 and v == v for v in out[:, :4].ravel().tolist()):
        return None
    return out


@functools.cache
def _affine_parts64() -> tuple[np.ndarray, np.ndarray]:
    """The ellipse method's float32 sines and cosines as float64: exactly the values numpy
    multiplies when it multiplies float64 sides by them."""
    sin, cos, _, _ = _affine_parts()
    sin, cos = sin.astype(np.float64), cos.astype(np.float64)
    for a in (sin, cos):
        a.flags.writeable = False
    return sin, cos


@functools.cache
def _rows_product_agrees() -> bool:
    """Whether this machine's M @ [x; y; 1] gives the bits of [x, y, 1] @ M.T (albumentations'
    product) for 360 to 360 × COLUMN_BOXES points: tried once a process on random points and
    matrices (a rotation, a shear, a mirror image)."""
    rng = np.random.default_rng(360)
    matrices = [np.vstack([rng.normal(0, 1, (2, 3)) * [1, 1, 300], [0, 0, 1]]) for _ in range(3)]
    for boxes in range(1, COLUMN_BOXES + 1):
        points = np.ones((360 * boxes, 3))
        points[:, :2] = rng.uniform(-900, 1900, (360 * boxes, 2))
        rows = np.ascontiguousarray(points.T)
        for matrix in matrices:
            if not np.array_equal(matrix @ rows, (points @ matrix.T).T):
                return False
    return True


def _ellipse_points(boxes: np.ndarray) -> np.ndarray:
    """`bboxes_affine_ellipse`'s points, as rows [x, y, 1]: each box's inscribed ellipse at 360
    whole degrees (float32 sines and cosines, as albumentations makes them)."""
    sin, cos, _, _ = _affine_parts()
    half_w = (boxes[:, 2] - boxes[:, 0]) / 2
    half_h = (boxes[:, 3] - boxes[:, 1]) / 2
    points = np.empty((len(boxes), len(sin), 3), np.result_type(half_w.dtype, sin.dtype))
    x, y = points[:, :, 0], points[:, :, 1]  # made in place: the same operations, without a stack
    np.multiply(half_w[:, None], sin, out=x)
    x += (boxes[:, 0] + half_w)[:, None]
    np.multiply(half_h[:, None], cos, out=y)
    y += (boxes[:, 1] + half_h)[:, None]
    points[:, :, 2] = 1
    return points


def _corner_points(boxes: np.ndarray) -> np.ndarray:
    """`bboxes_affine_largest_box`'s points, as rows [x, y, 1]: each box's four corners."""
    points = np.ones((len(boxes), 4, 3), np.result_type(boxes.dtype, float))
    points[:, :, 0] = boxes[:, [0, 2, 2, 0]]
    points[:, :, 1] = boxes[:, [1, 1, 3, 3]]
    return points


def with_rotate_method(spec: dict, method: str) -> dict:
    """The spec with `rotate_method` set where its transform takes one and does not set it."""
    spec = dict(spec)
    if "transforms" in spec:
        spec["transforms"] = [with_rotate_method(s, method) for s in spec["transforms"]]
    elif "rotate_method" in init_parameters(allowed_transforms()[spec[_FULLNAME]]) and "rotate_method" not in spec:
        spec["rotate_method"] = method
    return spec


REFLECTING = {k: BORDER_NAMES[k] for k in (2, 3, 4)}


def check_for_kind(recipe: Recipe, kind: Any) -> list[str]:
    """Refuse a transform that needs an input this dataset does not have (a box-safe crop on a
    classification dataset), or that cannot move a target it has (OverlayElements and boxes);
    return warnings about what a transform will do to the dataset's targets."""
    from albumentations.core.transforms_interface import DualTransform
    from albumentations.core.type_definitions import Targets

    provided = frozenset({"image", *kind.albumentations_targets})
    # albumentations' name of a target (bboxes, mask, masks, keypoints) -> the Targets it is
    carried = {t: Targets[{"masks": "MASK"}.get(t, t.upper())] for t in kind.albumentations_targets}
    for label, spec in _walk(recipe.transforms, "transform "):
        if is_mix(spec):
            _check_mix_kind(recipe, label, spec, kind)
            continue
        cls = allowed_transforms()[spec[_FULLNAME]]
        params = {k: v for k, v in spec.items() if k not in (_FULLNAME, "transforms")}
        missing = missing_targets(cls, params, provided)
        if missing:
            needs = ", ".join(repr(t) for t in sorted(missing))
            raise RecipeError(f"{recipe.path}: {label} {spec[_FULLNAME]}: needs {needs}, which a {kind.name} dataset "
                              "does not have")
        targets = getattr(cls, "_targets", ())
        targets = targets if isinstance(targets, tuple) else (targets,)
        if issubclass(cls, DualTransform):
            for target in kind.albumentations_targets:
                if carried[target] not in targets:
                    what = kind.target_words.get(target, target)
                    raise RecipeError(f"{recipe.path}: {label} {spec[_FULLNAME]}: cannot move {what}, which this "
                                      f"{kind.name} dataset has")
    unused = [k for k in recipe.kind_options if k not in type(kind).recipe_fields()]
    return [*(f"{k}: this {kind.name} dataset does not use it (another kind of target does)" for k in unused),
            *kind.check_recipe(recipe)]


def _check_mix_kind(recipe: Recipe, label: str, spec: dict, kind: Any) -> None:
    kinds = type(mix_of(spec)).kinds
    if kind.name not in kinds:
        raise RecipeError(f"{recipe.path}: {label} {spec[_FULLNAME]}: works on {' and '.join(kinds)} datasets, "
                          f"not on a {kind.name} dataset")


def mirror_warnings(recipe: Recipe) -> list[str]:
    """A warning for each transform whose border mode mirrors the image into the border."""
    out = []
    for label, spec in _walk(recipe.transforms, "transform "):
        mode = spec.get("border_mode")
        if mode in REFLECTING:
            out.append(f"{label} {spec[_FULLNAME]}: border_mode {mode} ({REFLECTING[mode]}) mirrors objects into "
                       "the border, and albumentations adds a box for each mirror image (instance masks keep the "
                       "part inside it); border_mode: 0 fills the border instead")
    return out


def _walk(specs, prefix: str):
    for i, spec in enumerate(specs, start=1):
        yield f"{prefix}{i}", spec
        if "transforms" in spec:
            yield from _walk(spec["transforms"], f"{prefix}{i}.")


def describe(recipe: Recipe) -> list[str]:
    """One line a transform, with every parameter the user gave and p; under it, the defaults that
    act where not given (a new user's ColorJitter of brightness and contrast turned yellow stars
    blue: its hue defaults to the whole colour wheel, which nothing showed)."""
    lines = []

    def walk(specs: tuple[dict, ...] | list[dict], prefix: str, depth: int) -> None:
        for i, spec in enumerate(specs, start=1):
            params = {k: v for k, v in spec.items() if k not in (_FULLNAME, "transforms")}
            if "p" not in params:
                params_text = f"p={(mix_of(spec) if is_mix(spec) else build_transform(spec)).p} (default)"
            else:
                params_text = ""
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
            text = ", ".join(t for t in (shown, params_text) if t)
            lines.append(f"{'  ' * depth}{prefix}{i}. {spec[_FULLNAME]}({text})")
            defaults = _acting_defaults(spec, params)
            if defaults:
                lines.append(f"{'  ' * depth}   defaults: {defaults}")
            if "transforms" in spec:
                walk(spec["transforms"], f"{prefix}{i}.", depth + 1)

    walk(recipe.transforms, "", 0)
    return lines


def _acting_defaults(spec: dict, given: dict) -> str:
    """The parameters of a step's transform that are not given and act by their default (not
    None: an option left off), as `augpipe transforms` shows them."""
    if is_mix(spec) or "transforms" in spec:
        return ""
    cls = allowed_transforms().get(spec[_FULLNAME])
    if cls is None:
        return ""
    from augpipe.catalog import REQUIRED, parameters

    return ", ".join(f"{k}={d!r}" for k, d in parameters(cls)  # rotate_method: the recipe's own, for boxes
                     if k not in given and k not in ("p", "rotate_method") and d is not None and d is not REQUIRED)
