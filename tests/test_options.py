"""Options checked once, where they are made (augpipe/options.py)."""

from __future__ import annotations


def test_copies_are_bounded_before_any_work(cli, folder, tmp_path):
    done = cli("expand", folder, "-r", "flips", "--copies", "30000000", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 2 and "--copies must be 0 to 1,000" in done.output
    assert not (tmp_path / "out").exists()
