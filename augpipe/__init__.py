"""augpipe: a folder of labelled images becomes an augmented, training-ready Parquet dataset."""

import os as _os

__version__ = "0.4.0.dev0"

# albumentations asks the network for a newer version at import: not from a data pipeline
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_EXPORTS = {
    "AugpipeError": "augpipe.errors",
    "RecipeError": "augpipe.errors",
    "SourceError": "augpipe.errors",
    "OutputError": "augpipe.errors",
    "ExpandWarning": "augpipe.errors",
    "Recipe": "augpipe.recipe",
    "load_recipe": "augpipe.recipe",
    "ExpandOptions": "augpipe.options",
    "expand": "augpipe.pipeline",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    # imported on first use: `augpipe --help` should not pay for OpenCV and albumentations
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'augpipe' has no attribute {name!r}")
