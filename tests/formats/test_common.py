"""What the formats share (augpipe/formats/common.py): reading their annotation files."""

from __future__ import annotations

import pyarrow as pa

from conftest import RefusingStore


def test_pyarrow_errors_reading_an_annotation_file_are_its_reason():
    from augpipe.formats.common import read_files

    store = RefusingStore(pa.ArrowInvalid("Empty path component in path a//labels.csv"))
    assert read_files(store, ["a//labels.csv"]) == {"a//labels.csv": "cannot read: Empty path component in path "
                                                                      "a//labels.csv"}


def test_a_flaw_is_its_reason_and_knows_its_check_through_pickling():
    import pickle

    from augpipe.formats.common import Flaw

    flaw = pickle.loads(pickle.dumps(Flaw("box_outside", "box 0 [60, 40, 10, 5]: outside the 64×48 image")))
    assert (flaw, flaw.check) == ("box 0 [60, 40, 10, 5]: outside the 64×48 image", "box_outside")
