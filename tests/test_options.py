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
    ({"val_fraction": "0.1"}, "ExpandOptions(val_fraction=...) takes a finite number, not '0.1'"),
    ({"seed": True}, "ExpandOptions(seed=...) takes a whole number, not True"),
    ({"shard_size": None}, "ExpandOptions(shard_size=...) takes a whole number, not None"),
    ({"val_fraction": float("nan")}, "ExpandOptions(val_fraction=...) takes a finite number, not nan"),
    ({"workers": 0}, "--workers must be 1 or more, not 0"),
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

    options = ExpandOptions(workers=np.int64(2), copies=np.int64(1), val_fraction=np.float32(0.25), shard_size=256e6)
    assert (options.workers, options.shard_size) == (2, 256_000_000)
    assert all(type(v) in (int, float) for v in (options.workers, options.copies, options.val_fraction, options.shard_size))
    train = TrainOptions(lr=np.float64(0.01), epochs=np.int32(3), seed=np.int64(1))
    assert (type(train.lr), type(train.epochs), type(train.seed)) == (float, int, int)


@pytest.mark.parametrize("kwargs, needle", [
    ({"epochs": 0}, "--epochs must be 1 or more, not 0"),
    ({"batch_size": None}, "TrainOptions(batch_size=...) takes a whole number, not None"),
    ({"lr": float("nan")}, "TrainOptions(lr=...) takes a finite number, not nan"),
    ({"lr": 0}, "--lr must be above 0, not 0.0"),
])
def test_train_options_out_of_range_get_one_line(kwargs, needle):
    from augpipe.errors import UsageError
    from augpipe.options import TrainOptions

    with pytest.raises(UsageError, match=re.escape(needle)):
        TrainOptions(**kwargs)


def test_numpy_numbers_run_through_expand(tmp_path, folder):
    """They reach the manifest's JSON as Python's numbers (a hostile test: int64 broke json.dumps)."""
    import numpy as np

    from augpipe import ExpandOptions, expand

    expand(folder, "flips", tmp_path / "out", ExpandOptions(workers=1, copies=np.int64(1), seed=np.int64(3),
                                                            val_fraction=np.float32(0.25), progress=False))
    manifest = json.loads((tmp_path / "out" / "_augpipe.json").read_text())
    assert manifest["seed"] == 3


def test_an_empty_path_is_refused(cli, folder, tmp_path):
    for args in (["", "-r", "flips", "-o", str(tmp_path / "out")], [str(folder), "-r", "flips", "-o", ""]):
        done = cli("expand", *args, "-q", "-w", "1")
        assert done.exit_code != 0 and "an empty path names no folder" in one_line(done.output)
    assert not (tmp_path / "out").exists()
