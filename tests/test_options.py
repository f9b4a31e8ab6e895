"""Options checked once, where they are made (augpipe/options.py)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import class_scenes, one_line


def test_copies_are_bounded_before_any_work(cli, folder, tmp_path):
    done = cli("expand", folder, "-r", "flips", "--copies", "30000000", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 2 and "--copies must be 0 to 1,000" in done.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["--repeat-threshold", "0.5"], "--repeat-threshold sets --balance's repeat factors: it needs --balance"),
    (["--balance", "--repeat-threshold", "0"], "--repeat-threshold is a share of images: above 0 and at most 1"),
    (["--balance", "--repeat-threshold", "1.5"], "--repeat-threshold is a share of images: above 0 and at most 1"),
    (["--balance", "--repeat-threshold", "0.5"], "--repeat-threshold is for the repeat factors of --balance on detection"),
])
def test_repeat_threshold_is_refused_where_it_means_nothing(cli, folder, tmp_path, args, needle):
    done = cli("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1", *args)
    assert done.exit_code == 2 and needle in one_line(done.output)
    assert not (tmp_path / "out" / "_augpipe.json").exists()


def test_repeat_threshold_is_recorded(cli, tmp_path):
    data = class_scenes(tmp_path / "data", [[0], [0], [0, 1], [1], [2], []])
    done = cli("expand", data, "-r", "flips", "-o", tmp_path / "out", "-q", "-w", "1", "--val-fraction", "0",
               "--balance", "--repeat-threshold", "0.25")
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "out" / "_augpipe.json").read_text())
    assert manifest["options"]["repeat_threshold"] == 0.25 and manifest["balance"]["threshold"] == 0.25
    # shares 1/2, 1/3, 1/6: only coin's is under 0.25, its factor sqrt(0.25 * 6)
    assert manifest["balance"]["repeat_factor"] == {"cat": 1.0, "coin": round(1.5 ** 0.5, 4), "cup": 1.0}


@pytest.mark.parametrize("kwargs, needle", [
    ({"shard_size": "30KB"}, "ExpandOptions(shard_size=...) takes a whole number, not '30KB'"),
    ({"workers": 2.5}, "ExpandOptions(workers=...) takes a whole number, not 2.5"),
    ({"val_fraction": "0.1"}, "ExpandOptions(val_fraction=...) takes a number, not '0.1'"),
    ({"seed": True}, "ExpandOptions(seed=...) takes a whole number, not True"),
])
def test_a_library_callers_option_of_the_wrong_type_gets_one_line(kwargs, needle):
    from augpipe import ExpandOptions
    from augpipe.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(needle)):
        ExpandOptions(**kwargs)


def test_numpy_numbers_are_numbers():
    import numpy as np

    from augpipe import ExpandOptions
    from augpipe.options import TrainOptions

    assert ExpandOptions(workers=np.int64(2), val_fraction=np.float32(0.25)).workers == 2
    assert TrainOptions(lr=np.float64(0.01), epochs=np.int32(3)).epochs == 3
