"""Targets: what a row carries beside its image, one kind a module.

Every module here that defines `KIND` (a `Target` subclass, see base.py for the contract) is a
kind, registered by its `name`; nothing else lists them, so a new kind is one new file.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from augpipe.targets.base import Target


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, type[Target]]:
    """Every kind by name, in name order: the modules of this package that define KIND."""
    kinds = {}
    for module in pkgutil.iter_modules(__path__):
        cls = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KIND", None)
        if cls is not None:
            kinds[cls.name] = cls
    return dict(sorted(kinds.items()))


def _kind_class(name: str) -> type[Target]:
    kinds = registry()
    if name not in kinds:
        raise ValueError(f"unknown target kind {name!r}: one of {', '.join(kinds)}")
    return kinds[name]


def kind_for(name: str, **options) -> Target:
    """A kind by name with its options (detection: instance_masks)."""
    cls = _kind_class(name)
    try:
        return cls(**options)
    except TypeError:
        raise ValueError(f"a {name} target takes no option {', '.join(options)}") from None


def for_manifest(manifest: dict) -> Target:
    """A dataset's target kind, from its manifest: the one place it is derived."""
    kind = _kind_class(manifest.get("task", "classification")).of_manifest(manifest)
    kind.known_classes = len(manifest.get("classes") or ())
    return kind


def for_scan(scan) -> Target:
    """A source's target kind, from its scan."""
    return _kind_class(scan.task).of_scan(scan)


def check_choices() -> dict[str, Target]:
    """`augpipe check --task`'s choices: every kind's variants."""
    return {name: kind for cls in registry().values() for name, kind in cls.variants().items()}
