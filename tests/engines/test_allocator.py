"""glibc's malloc in augpipe's own processes (augpipe/engines/local.py: tune_allocator)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

PROBE = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        print("no mallinfo2"); sys.exit()
    libc.mallinfo2.restype = Info
    if sys.argv[1] == "tuned":
        from augpipe.engines.local import tune_allocator
        tune_allocator()
    before = libc.mallinfo2().hblkhd
    kept = np.ones(600_000, np.uint8)  # a 600 KB array: a few masks' worth
    print(libc.mallinfo2().hblkhd - before)
""")


def _mmapped(how: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, how], capture_output=True, text=True, check=True).stdout.strip()


def test_a_workers_arrays_up_to_a_megabyte_come_from_the_heap_not_a_fresh_mapping_each():
    """By default glibc maps a 600 KB array afresh (its pages faulted in each time); in a process
    augpipe tuned, it comes from the heap."""
    plain = _mmapped("plain")
    if plain == "no mallinfo2":
        pytest.skip("glibc older than 2.33")
    assert int(plain) >= 600_000
    assert int(_mmapped("tuned")) == 0
