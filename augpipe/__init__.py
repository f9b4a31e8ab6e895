"""augpipe: a folder of labelled images becomes an augmented, training-ready Parquet dataset."""

__version__ = "0.1.0"

import os as _os

# albumentations asks the network for a newer version at import: not from a data pipeline
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from augpipe.errors import AugpipeError, RecipeError, SourceError, OutputError  # noqa: E402
from augpipe.recipe import Recipe, load_recipe  # noqa: E402
from augpipe.expand import ExpandOptions, expand  # noqa: E402

__all__ = [
    "__version__",
    "AugpipeError",
    "RecipeError",
    "SourceError",
    "OutputError",
    "Recipe",
    "load_recipe",
    "ExpandOptions",
    "expand",
]
