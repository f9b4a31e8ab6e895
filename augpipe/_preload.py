"""What the fork server imports once, before it forks each worker."""

import pyarrow.parquet  # noqa: F401

import augpipe.engine  # noqa: F401
import augpipe.tasks  # noqa: F401
from augpipe.recipe import import_albumentations

import_albumentations()
