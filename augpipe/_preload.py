"""What the fork server imports once, before it forks each worker."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: idle OpenBLAS threads spin

import pyarrow.parquet  # noqa: F401, E402

import augpipe.engines.local  # noqa: F401, E402
import augpipe.jobs  # noqa: F401, E402
from augpipe.recipe import import_albumentations  # noqa: E402

# the Hub helpers stay (no lean_import): a library caller's own forkserver processes share this server
import_albumentations()
