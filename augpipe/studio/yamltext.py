"""The studio's recipe text: the line a recipe message is about, and edits that keep the rest.

`error_line` reads node marks from `yaml.compose` (which builds no objects); `edit` changes the
text through ruamel.yaml's round trip, so comments, key order and layout elsewhere stay as written.
"""

from __future__ import annotations

import io
import re
from typing import Any

import yaml

from augpipe.errors import RecipeError

_FULLNAME = "__class_fullname__"

# ---------------------------------------------------------------- the line of a message

_YAML_LINE = re.compile(r"not valid YAML at line (\d+)")
_TRANSFORM = re.compile(r"(?:^|[\s:])transform (\d+(?:\.\d+)*)\b")
_FIELD = re.compile(r"(?:field|key) '([^']+)'")
_EMPTY = re.compile(r"'(\w+)' is empty")
_NAMED = re.compile(r" \w+: (\w+)[= ]")  # after "transform 1": " Affine: rotate=45"


def error_line(text: str, message: str) -> int | None:
    """The 1-based line of `text` that a message of parse_recipe, check_for_kind, check_recipe
    (or a recipe's warnings) is about; None when it cannot tell."""
    try:
        return _error_line(text, message)
    except Exception:  # a line is a help: a text it cannot read has none
        return None


def _error_line(text: str, message: str) -> int | None:
    found = _YAML_LINE.search(message)
    if found:
        return int(found.group(1))
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return None
    label = _TRANSFORM.search(message)
    if label:
        item = _item_node(root, [int(i) - 1 for i in label.group(1).split(".")])
        if item is None:
            return None
        # "field 'limit'", or a warning's "rotate=45 ..." / "border_mode 2 ...": the parameter's line
        field = _FIELD.search(message, label.end()) or _NAMED.match(message, label.end())
        key = _key_node(_params_node(item), field.group(1)) if field else None
        return _line(key or item)
    field = _FIELD.search(message) or _EMPTY.search(message)
    if field:
        return _line(_path_key(root, field.group(1).split(".")))
    for key, _ in root.value:  # a warning about a top-level key: "keypoint_flip: ..."
        if isinstance(key, yaml.ScalarNode) and (message.startswith(f"{key.value}: ") or f": {key.value}: " in message):
            return _line(key)
    return None


def _line(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _key_node(mapping: yaml.Node | None, key: str) -> yaml.Node | None:
    """The key node of `key` in a mapping node (the last one, as a loader keeps the last)."""
    if not isinstance(mapping, yaml.MappingNode):
        return None
    found = [k for k, _ in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[-1] if found else None


def _value_node(mapping: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    found = [v for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[-1] if found else None


def _path_key(root: yaml.Node, parts: list[str]) -> yaml.Node | None:
    """The deepest node of a dotted field path (`output.resize.height`) that is in the text."""
    node, last = root, None
    for part in parts:
        if isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = last = node.value[int(part)]
            continue
        key = _key_node(node, part)
        if key is None:
            break
        node, last = _value_node(node, part), key
    return last


def _transforms_node(root: yaml.Node) -> yaml.Node | None:
    """The top-level transforms list, or that of an albumentations save (`transform: {transforms}`)."""
    found = _value_node(root, "transforms")
    if found is None:
        found = _value_node(_value_node(root, "transform"), "transforms")
    return found if isinstance(found, yaml.SequenceNode) else None


def _params_node(item: yaml.Node) -> yaml.Node | None:
    """An item's parameters: `Name: {params}`'s mapping, or the item itself in albumentations' form."""
    if not isinstance(item, yaml.MappingNode):
        return None
    if _key_node(item, _FULLNAME) is not None:
        return item
    return item.value[0][1] if len(item.value) == 1 else None


def _item_node(root: yaml.Node, path: list[int]) -> yaml.Node | None:
    items, item = _transforms_node(root), None
    for depth, index in enumerate(path):
        if depth:
            items = _value_node(_params_node(item), "transforms")
        if not isinstance(items, yaml.SequenceNode) or not 0 <= index < len(items.value):
            return None
        item = items.value[index]
    return item


# ---------------------------------------------------------------- edits

OPS = ("add", "set", "unset", "remove", "move")
# What `add` writes for a parameter that has no default: sizes are the side of `augpipe check`'s
# test image (dryrun.REFERENCE_SIZE), so that the new transform passes the check; a compose gets
# one child to start from. Another required parameter gets the low end of its range, or null.
_STARTING_VALUES = {"height": "side", "width": "side", "size": ["side", "side"], "min_max_height": ["half", "side"],
                    "transforms": ["HorizontalFlip"], "num_grid_xy": [4, 4], "magnitude": 10}


def edit(text: str, op: str, path: list[int] = (), name: str | None = None, param: str | None = None,
         value: str | None = None, by: int = 0) -> str:
    """The recipe `text` with one edit (see the studio's POST /api/edit). `path` is the 0-based
    index of a transform, [2, 0] the first child of the third; `value` is YAML text."""
    if op not in OPS:
        raise RecipeError(f"op is one of {', '.join(OPS)}; not '{op}'")
    path = () if path is None else path
    if not isinstance(path, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in path):
        raise RecipeError(f"a path is a list of 0-based indexes, like [2, 0]; not {path!r}")
    path = list(path)
    if op in ("set", "unset") and not (isinstance(param, str) and param):
        raise RecipeError(f"{op} needs the name of a parameter")
    if op != "add" and not path:
        raise RecipeError(f"{op} needs the path of a transform")
    text, tail = _split_tail(text)
    writer, data = _load(text)
    if op == "add":
        _add(data, path, name)
    else:
        items, index = _find(data, path)
        if op == "remove":
            del items[index]
        elif op == "move":
            _move(items, index, by, path)
        elif op == "unset":
            _name_of(items[index], path)
            (_params_of(items[index]) or {}).pop(param, None)
        else:
            _writable_params(items, index, path)[param] = _flowed(_parse_value(value))
    out = io.StringIO()
    writer.dump(data, out)
    return tail + out.getvalue() if not text else out.getvalue() + tail


def _split_tail(text: str) -> tuple[str, str]:
    """The text, and the comments and blank lines that end it: ruamel hangs those on the last
    item, which an edit may move or remove."""
    lines = text.splitlines(keepends=True)
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    body = "".join(lines[:end])
    if body and not body.endswith("\n"):
        body += "\n"
    return body, "".join(lines[end:])


def _load(text: str) -> tuple[Any, Any]:
    """A round-trip YAML set to the text's own indentation, and the text's data."""
    from ruamel.yaml.comments import CommentedMap

    from augpipe.recipe import _read_yaml

    if not text.strip():
        return _writer(2, 4, 2), CommentedMap()
    _read_yaml(text, "the recipe")  # a mapping, in safe YAML, of a size a recipe may have
    writer = _writer(2, 4, 2)
    try:
        data = writer.load(text)
    except Exception as exc:  # ruamel's own errors: what the safe loader took, it did not
        raise RecipeError(f"the recipe cannot be edited here: {str(exc).splitlines()[0]}") from None
    return _same_layout(text, data), data


def _writer(mapping: int, sequence: int, offset: int) -> Any:
    from ruamel.yaml import YAML

    writer = YAML(typ="rt")
    writer.width = 4096  # never fold a long line
    writer.preserve_quotes = True
    writer.allow_duplicate_keys = True  # as PyYAML, which reads recipes
    writer.brace_single_entry_mapping_in_flow_sequence = True  # [A, {B: {p: 1}}] stays so
    writer.indent(mapping=mapping, sequence=sequence, offset=offset)
    return writer


def _same_layout(text: str, data: Any) -> Any:
    """The writer whose indentation gives back the unedited text, or the closest one."""
    import difflib

    best, score = None, -1.0
    for mapping in (2, 4):
        for sequence, offset in ((4, 2), (2, 0), (6, 4)):
            writer = _writer(mapping, sequence, offset)
            out = io.StringIO()
            writer.dump(data, out)
            if out.getvalue() == text:
                return writer
            ratio = difflib.SequenceMatcher(None, out.getvalue().splitlines(), text.splitlines()).ratio()
            if ratio > score:
                best, score = writer, ratio
    return best


def _label(path: list[int]) -> str:
    return "transform " + ".".join(str(i + 1) for i in path)


def _top_items(data: Any, create: bool = False) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    save = data.get("transform")
    if "transforms" not in data and isinstance(save, dict) and _FULLNAME in save:
        data = save  # albumentations' save: transform: {__class_fullname__: Compose, transforms: [...]}
    items = data.get("transforms")
    if items is None and create:
        items = data["transforms"] = CommentedSeq()
    if not isinstance(items, list):
        raise RecipeError("the recipe has no 'transforms' list")
    return items


def _params_of(item: Any) -> Any:
    """The mapping an item's parameters are in, or None (a bare name, or `Name:` with none)."""
    if isinstance(item, dict) and _FULLNAME in item:
        return item
    if isinstance(item, dict) and len(item) == 1:
        params = next(iter(item.values()))
        return params if isinstance(params, dict) else None
    return None


def _find(data: Any, path: list[int]) -> tuple[Any, int]:
    """The list that holds the transform at `path`, and its index there."""
    items = _top_items(data)
    for depth, index in enumerate(path):
        if depth:
            items = (_params_of(items[path[depth - 1]]) or {}).get("transforms")
            if not isinstance(items, list):
                raise RecipeError(f"{_label(path[:depth])} is not a compose (OneOf, SomeOf, ...) with a transforms list")
        if not 0 <= index < len(items):
            raise RecipeError(f"no {_label(path[:depth + 1])}: the list has {len(items)}")
    return items, path[-1]


def _name_of(item: Any, path: list[int]) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and _FULLNAME in item:
        return str(item[_FULLNAME]).rsplit(".", 1)[-1]
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    raise RecipeError(f"{_label(path)} cannot be edited here: write it as 'Name: {{param: value}}'")


def _writable_params(items: Any, index: int, path: list[int]) -> Any:
    """The item's parameters as a mapping to change: a bare `Name`, or `Name:` with no parameters,
    becomes `Name: {}` (flow style)."""
    from ruamel.yaml.comments import CommentedMap

    item = items[index]
    name = _name_of(item, path)
    params = _params_of(item)
    if params is None:
        if isinstance(item, dict) and next(iter(item.values())) is not None:
            raise RecipeError(f"{_label(path)} {name}: parameters must be a mapping like {{p: 0.5}}")
        params = _flowed({})
        if isinstance(item, dict):
            item[name] = params
        else:
            items[index] = CommentedMap([(name, params)])
            _keep_comment(items, index, items[index], name)
    return params


def _keep_comment(items: Any, index: int, mapping: Any, key: str) -> None:
    """The end-of-line comment of a bare item moved to its new mapping's line (ruamel keeps a
    list item's comment on the list, where it would now land between the dash and the item)."""
    held = items.ca.items.pop(index, None)
    if held and held[0] is not None:
        mapping.ca.items[key] = [None, None, held[0], None]


def _add(data: Any, path: list[int], name: str | None) -> None:
    from ruamel.yaml.comments import CommentedMap

    from augpipe.catalog import transform_entries

    palette = {t["name"]: t for g in transform_entries()["groups"] for t in g["transforms"]}
    if name not in palette:
        raise RecipeError(f"add needs a transform the recipe may use; not '{name}'")
    if path:
        holder, index = _find(data, path)
        items = (_params_of(holder[index]) or {}).get("transforms")
        if not isinstance(items, list):
            raise RecipeError(f"{_label(path)} is not a compose (OneOf, SomeOf, ...) with a transforms list")
    else:
        items = _top_items(data, create=True)
    params = {p["name"]: _starting_value(p) for p in palette[name]["params"] if p["required"]}
    params["p"] = 0.5
    if items and all(isinstance(i, dict) and _FULLNAME in i for i in items):  # albumentations' own form
        items.append(_flowed({_FULLNAME: name, **params}))
    else:
        items.append(CommentedMap([(name, _flowed(params))]))


def _starting_value(param: dict) -> Any:
    """What `add` writes for a required parameter (a palette entry's)."""
    from augpipe.dryrun import REFERENCE_SIZE

    start = _STARTING_VALUES.get(param["name"])
    if start is None:
        return param["range"][0] if param["range"] else None
    words = {"side": min(REFERENCE_SIZE), "half": min(REFERENCE_SIZE) // 2}
    return [words.get(v, v) for v in start] if isinstance(start, list) else words.get(start, start)


def _move(items: Any, index: int, by: int, path: list[int]) -> None:
    if isinstance(by, bool) or by not in (-1, 1):
        raise RecipeError(f"move goes by -1 or 1; not {by!r}")
    to = index + by
    if not 0 <= to < len(items):
        raise RecipeError(f"{_label(path)} is {'first' if by < 0 else 'last'} in its list already")
    items[index], items[to] = items[to], items[index]
    comments = getattr(items, "ca", None)  # an item's end-of-line comment goes with it
    if comments is not None:
        mine, theirs = comments.items.pop(index, None), comments.items.pop(to, None)
        if mine is not None:
            comments.items[to] = mine
        if theirs is not None:
            comments.items[index] = theirs


def _parse_value(value: str | None) -> Any:
    if value is None:
        raise RecipeError("set needs a value (YAML text, e.g. [-15, 15])")
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"the value {value!r} is not YAML: {problem}") from None


def _flowed(value: Any) -> Any:
    """A value as ruamel data written in flow style: `{p: 0.5}`, `[-15, 15]`."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap((k, _flowed(v)) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        out = CommentedSeq(_flowed(v) for v in value)
    else:
        return value
    out.fa.set_flow_style()
    return out
