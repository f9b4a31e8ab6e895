"""Decoding (augpipe/decode.py): a broken image is a skip, and no decoder's warning reaches stderr."""

from __future__ import annotations

import subprocess

from conftest import ENV, augpipe


def test_no_decoder_warning_reaches_stderr(tmp_path, folder):
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    (folder / "cat" / "half.png").write_bytes(png[: len(png) // 2])
    done = subprocess.run(augpipe("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-w", "2", "-q"),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
