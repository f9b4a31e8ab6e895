"""`augpipe transforms` and the studio's palette: what a recipe may use, read from albumentations itself."""

from __future__ import annotations

import enum
import functools
import inspect
import math
import re
import types
import typing
from typing import Any

GROUPS = ("geometric", "crops", "colour", "noise and blur", "weather", "dropout", "composition", "other images",
          "other")
_NOISE_AND_BLUR = ("Noise", "Blur", "Sharpen", "Emboss", "Compression", "Downscale", "Superpixels",
                   "SaltAndPepper", "RingingOvershoot", "Spatter", "Defocus", "ChromaticAberration")
_WEATHER = ("RandomFog", "RandomRain", "RandomSnow", "RandomSunFlare", "RandomShadow", "RandomGravel",
            "PlasmaShadow")
REQUIRED = inspect.Parameter.empty  # the default of a parameter that has none


def group_of(name: str, cls: type) -> str:
    module = cls.__module__
    if ".geometric." in module:
        return "geometric"
    if ".crops." in module:
        return "crops"
    if ".dropout." in module:
        return "dropout"
    if ".blur." in module or any(k in name for k in _NOISE_AND_BLUR):
        return "noise and blur"
    if name in _WEATHER:
        return "weather"
    if ".pixel." in module:
        return "colour"
    if module.endswith(".composition"):
        return "composition"
    return "other"


def parameters(cls: type) -> list[tuple[str, Any]]:
    """(name, default) for each parameter a recipe may give, REQUIRED where there is no default."""
    from augpipe.recipe import init_parameters

    return [(name, p.default) for name, p in init_parameters(cls).items()]


@functools.lru_cache(maxsize=1)
def _listing() -> dict[str, list[tuple[str, type, list[tuple[str, Any]]]]]:
    """{group: [(name, class, [(parameter, default)])]}: the transforms a recipe may use, not those
    refused whatever their parameters (needing a mask or other images, making float pixels); the
    multi-image steps of augpipe.mixing under "other images", their class the step's."""
    from augpipe.mixing import registry
    from augpipe.recipe import allowed_transforms, refusal

    groups: dict[str, list] = {g: [] for g in GROUPS}
    for name, cls in sorted(allowed_transforms().items()):
        if refusal(name) is None and name not in registry():
            groups[group_of(name, cls)].append((name, cls, parameters(cls)))
    for name, mix in registry().items():
        fields = mix.Params.model_fields
        groups["other images"].append(
            (name, mix, [(k, REQUIRED if f.is_required() else f.default) for k, f in fields.items()]))
    return {g: items for g, items in groups.items() if items}


def catalog() -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """{group: [(transform, [(parameter, default's repr or "required")])]}, as `augpipe transforms` shows it."""
    return {g: [(name, [(k, "required" if d is REQUIRED else repr(d)) for k, d in params])
                for name, _, params in items]
            for g, items in _listing().items()}


def chosen(groups: dict[str, list], word: str) -> dict[str, list]:
    """The groups, or the one transform, that `augpipe transforms WORD` shows: a group by its name
    in any case, with - or _ for its spaces, or by one of its words alone (noise: "noise and
    blur"), one or many (crop: "crops", whose list holds Crop too), or a transform by its name
    (as written, it comes first: Crop). ValueError naming the choices when none, or more, fit."""
    exact = {g: [t for t in items if t[0] == word.strip()] for g, items in groups.items()}
    exact = {g: items for g, items in exact.items() if items}
    if exact:
        return exact
    said = " ".join(re.split(r"[\s_-]+", word.strip().lower()))
    forms = {said, said + "s", said.removesuffix("s")}
    fit = [g for g in groups if g.lower() in forms] or [g for g in groups if forms & set(g.lower().split())]
    if len(fit) == 1:
        return {fit[0]: groups[fit[0]]}
    named = {g: [t for t in items if t[0].lower() == said.replace(" ", "")] for g, items in groups.items()}
    named = {g: items for g, items in named.items() if items}
    if named and not fit:
        return named
    names = ", ".join(repr(g) if " " in g else g for g in groups)
    if fit:
        raise ValueError(f"group '{word}' could be {' or '.join(fit)}: give its whole name, in quotes")
    raise ValueError(f"no group or transform '{word}': choose a group from {names}, or name a transform")


@functools.lru_cache(maxsize=1)
def transform_entries() -> dict:
    """The studio's palette (GET /api/catalogue): catalog()'s groups and transforms, each with the
    first sentence of its docstring and, for each parameter, its type, JSON-able default, range,
    choices and the first sentence of its description."""
    return {"groups": [{"name": g, "transforms": [_entry(name, cls, params) for name, cls, params in items]}
                       for g, items in _listing().items()]}


def _entry(name: str, cls: type, params: list[tuple[str, Any]]) -> dict:
    from augpipe.mixing import registry
    from augpipe.recipe import import_albumentations

    mix = registry().get(name)
    if mix is not None:
        # a step's parameters are described in its Params model's docstring, or are those of the
        # albumentations transform of its name (A.Mosaic's)
        same = getattr(import_albumentations(), name, None)
        # (their types are augpipe's own: the field's annotation)
        described = {k: ("", text) for k, (_, text) in _args(same.__doc__ if same else None).items()}
        described.update(_backticked(mix.Params.__doc__))
        fields, doc = mix.Params.model_fields, mix.__doc__
    else:
        schema = getattr(cls, "InitSchema", None)
        fields, described, doc = (schema.model_fields if schema else {}), _args(cls.__doc__), cls.__doc__
    signature = inspect.signature(cls.__init__).parameters if mix is None else {}
    out = []
    for key, default in params:
        type_text, text = described.get(key, ("", ""))
        field = fields.get(key)
        annotation = field.annotation if field is not None else _annotation(signature.get(key))
        metadata = list(field.metadata) if field is not None else []
        out.append({
            "name": key,
            "type": type_text or _type_text(annotation),
            "default": None if default is REQUIRED else _jsonable(default),
            "required": default is REQUIRED,
            "range": _range(metadata + _inner_metadata(annotation)),
            "choices": _choices(annotation),
            "doc": _first_sentence(text),
        })
    return {"name": name, "doc": _first_sentence(_first_paragraph(doc or "")), "params": out}


def _annotation(param: inspect.Parameter | None) -> Any:
    if param is None or param.annotation is inspect.Parameter.empty:
        return None
    return param.annotation  # a string where the module defers its annotations


# ---------------------------------------------------------------- docstrings

# a sentence ends before a word that does not start in lower case ("i.e. expected" goes on), or
# before a list's first item ("...: - a", "... range. * If")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z\s])|:?\s+[-*]\s")


def _first_paragraph(doc: str) -> str:
    return inspect.cleandoc(doc).split("\n\n", 1)[0]


def _first_sentence(text: str) -> str:
    text = " ".join(text.split()).replace("``", "`")  # reStructuredText's literals as Markdown's
    return _SENTENCE_END.split(text, 1)[0]


def _args(doc: str | None) -> dict[str, tuple[str, str]]:
    """{parameter: (type, description)} from a Google-style docstring's `Args:` section, where an
    entry is `name (type): description`, the description running on in deeper-indented lines."""
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    out: dict[str, tuple[str, str]] = {}
    indent, key = None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        if depth == indent:
            key = None
            entry = _arg_entry(line.strip())
            if entry:
                key, type_text, text = entry
                out[key] = (type_text, text)
        elif key is not None:
            type_text, text = out[key]
            out[key] = (type_text, f"{text} {line.strip()}")
    return out


def _arg_entry(line: str) -> tuple[str, str, str] | None:
    """`name (type): text` -> (name, type, text); the type may hold brackets and parentheses."""
    match = re.match(r"(\w+)\s*", line)
    if not match:
        return None
    name, rest = match.group(1), line[match.end():]
    type_text = ""
    if rest.startswith("("):
        depth = 0
        for i, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                type_text, rest = rest[1:i].strip(), rest[i + 1:].lstrip()
                break
    if not rest.startswith(":"):
        return None
    return name, " ".join(type_text.split()), rest[1:].strip()


def _backticked(doc: str | None) -> dict[str, tuple[str, str]]:
    """{parameter: ("", description)} from a docstring that describes them as "`name`: text"."""
    text = " ".join((doc or "").split())
    parts = re.split(r"`(\w+)`:\s*", text)
    return {parts[i]: ("", parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)}


# ---------------------------------------------------------------- types, ranges, choices

def _type_text(annotation: Any) -> str:
    """A short readable type: `tuple[float, float] | float`, not typing's long form."""
    if annotation is None:
        return ""
    if isinstance(annotation, str):
        return annotation
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{name}[{', '.join(_type_text(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _inner_metadata(annotation: Any) -> list:
    """The constraints of an `Annotated[...]` inside a union (`Annotated[tuple[int, int], ...] | None`)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Annotated
                for m in typing.get_args(a)[1:]]
    return []


def _range(metadata: list) -> list | None:
    """[lo, hi] (None for an open side) from annotated_types' bounds and albumentations'
    `check_range_bounds(lo, hi)` validators, whose bounds live in the validator's closure."""
    lo = hi = None
    for item in metadata:
        for attr in ("ge", "gt"):
            if getattr(item, attr, None) is not None:
                lo = getattr(item, attr)
        for attr in ("le", "lt"):
            if getattr(item, attr, None) is not None:
                hi = getattr(item, attr)
        func = getattr(item, "func", None)
        if getattr(func, "__qualname__", "").startswith("check_range_bounds."):
            cells = dict(zip(func.__code__.co_freevars, (c.cell_contents for c in func.__closure__ or ())))
            lo = cells.get("min_val", lo)
            hi = cells.get("max_val") if cells.get("max_val") is not None else hi
    return None if lo is None and hi is None else [_jsonable(lo), _jsonable(hi)]


def _choices(annotation: Any) -> list | None:
    """The values of a Literal annotation (also of `Literal[...] | None`); None where other
    values may be given too (`float | Literal["random"]`)."""
    if typing.get_origin(annotation) is typing.Literal:
        return [_jsonable(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _choices(args[0])
    return None


def _jsonable(value: Any) -> Any:
    """Tuples as lists; enums, non-finite floats and other objects as their repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return repr(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    return repr(value)
