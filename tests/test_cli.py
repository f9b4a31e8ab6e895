"""The command line: every command has help and a README entry; errors are one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from augpipe.cli import app
from conftest import ENV, ROOT, augpipe, class_scenes, make_folder, one_line, rows

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def assert_one_line_error(result, code: int, *needles: str):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("augpipe: error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(cli, name):
    result = cli(name, "--help")
    assert result.exit_code == 0 and "Usage" in result.output
    assert f"augpipe {name}" in README


def test_recipes_lists_every_bundled_recipe(cli):
    result = cli("recipes")
    assert result.exit_code == 0
    for name in ("flips", "rotations", "translate", "colour", "grayscale", "crops", "classic", "digits"):
        assert any(line.startswith(name + " ") for line in result.output.splitlines()), name


def test_check_describes_a_valid_recipe(cli):
    result = cli("check", "classic")
    assert result.exit_code == 0
    assert "recipe 'classic' is valid" in result.output and "1. HorizontalFlip(p=0.5)" in result.output


def test_check_exits_1_on_warnings(cli, tmp_path):
    path = tmp_path / "shift.yaml"
    path.write_text("transforms: [{Affine: {translate_percent: 0.1}}]\n")
    result = cli("check", path)
    assert result.exit_code == 1
    assert "warning: transform 1 Affine: translate_percent=0.1 is a fixed value" in result.output
    assert "p not given, default p=0.5" in result.output


def test_check_relays_what_albumentations_says_of_a_transform_as_a_note(cli, tmp_path):
    """A new user's: albumentations deprecates ShiftScaleRotate for Affine, and check said nothing
    of it (its warning was silenced with the rest)."""
    import warnings

    import albumentations as A

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        A.ShiftScaleRotate(p=1)
    said = str(caught[0].message).splitlines()[0]  # albumentations' own words, whatever its version says
    path = tmp_path / "ssr.yaml"
    path.write_text("transforms: [{ShiftScaleRotate: {p: 1}}, {HorizontalFlip: {p: 0.5}}]\n")
    result = cli("check", path)
    assert result.exit_code == 0, result.output
    assert f"note: transform 1 ShiftScaleRotate: albumentations says: {said}" in result.output
    assert result.output.count("albumentations says") == 1


@pytest.mark.parametrize("text, needles", [
    ("transforms: [{Rotate: {limit: ten}}]", ["bad.yaml", "transform 1 Rotate", "field 'limit'"]),
    ("transforms: [HorizontalFlip, {Blurr: {}}]", ["bad.yaml", "transform 2 Blurr", "unknown transform", "'Blur'"]),
    ("transforms: [{HorizontalFlip: {p: 2}}]", ["transform 1 HorizontalFlip", "field 'p'"]),
    ("tranforms: [HorizontalFlip]", ["unknown top-level key 'tranforms'", "'transforms'"]),
    ("transforms: [{Rotate: {limit: 5, wobble: 1}}]", ["transform 1 Rotate", "field 'wobble'"]),
])
def test_check_and_expand_report_a_bad_recipe_in_one_line(cli, tmp_path, folder, text, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_one_line_error(cli("check", path), 2, *needles)
    assert_one_line_error(cli("expand", folder, "--recipe", path, "-q"), 2, *needles)


def test_expand_prints_a_summary(cli, folder, tmp_path):
    out = tmp_path / "out"
    result = cli("expand", folder, "--recipe", "flips.yaml", "--out", out, "-w", "1", "-q", "--seed", "7")
    assert result.exit_code == 0, result.output
    for word in ("inputs", "train", "validation", "classes", "skipped", "shards", "images/s", "_augpipe.json"):
        assert word in result.output
    assert json.loads((out / "_augpipe.json").read_text())["seed"] == 7


def test_expand_default_out_is_next_to_the_source(cli, folder):
    result = cli("expand", folder, "-r", "flips", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    assert (folder.parent / "data-expanded" / "_augpipe.json").is_file()


def test_expand_errors_are_one_line_with_exit_2(cli, tmp_path, folder):
    assert_one_line_error(cli("expand", tmp_path / "missing", "-r", "flips"), 2, "source folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("expand", tmp_path / "empty", "-r", "flips"), 2, "no images found")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(cli("expand", folder, "-r", "flips", "-o", tmp_path / "afile" / "out", "-q"), 2,
                          "cannot write")
    assert_one_line_error(cli("expand", folder, "-r", "nosuch"), 2, "recipe 'nosuch' not found")
    assert_one_line_error(cli("expand", folder, "-r", "flips", "-o", folder / "inside"), 2, "inside the source")
    bad_size = cli("expand", folder, "-r", "flips", "--shard-size", "lots")
    assert bad_size.exit_code == 2 and "not a size" in bad_size.output and "Traceback" not in bad_size.output
    huge = cli("expand", folder, "-r", "flips", "--shard-size", "9" * 400)
    assert huge.exit_code == 2 and "more than any disk holds" in huge.output and "Traceback" not in huge.output


def test_expand_refuses_other_output_and_overwrite_replaces_it(cli, folder, tmp_path):
    out = tmp_path / "out"
    assert cli("expand", folder, "-r", "flips", "-o", out, "-w", "1", "-q").exit_code == 0
    assert_one_line_error(cli("expand", folder, "-r", "flips", "-o", out, "-q", "--seed", "1"), 2,
                          "another seed", "--overwrite")
    assert cli("expand", folder, "-r", "flips", "-o", out, "-q", "--seed", "1", "--overwrite").exit_code == 0


def test_strict_exits_2_naming_the_file(cli, folder, tmp_path):
    (folder / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    result = cli("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-w", "1", "-q", "--strict")
    assert_one_line_error(result, 2, "dog/broken.jpg", "not a readable image", "--strict")
    relaxed = cli("expand", folder, "-r", "flips", "-o", tmp_path / "out2", "-w", "1", "-q")
    assert relaxed.exit_code == 0 and "dog/broken.jpg: not a readable image" in relaxed.output


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("--debug", "expand", tmp_path / "missing", "-r", "flips")
    assert result.exit_code != 0 and result.exception is not None


def test_demo_makes_data_expands_it_and_summarises(cli, tmp_path, monkeypatch):
    result = cli("demo", tmp_path / "demo", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    assert "sample dataset" in result.output and "train" in result.output
    assert (tmp_path / "demo" / "preview.png").is_file() and "preview.png" in result.output
    manifest = json.loads((tmp_path / "demo" / "expanded" / "_augpipe.json").read_text())
    assert manifest["classes"] == ["circle", "cross", "square", "triangle"]
    assert manifest["counts"]["train"]["augmented"] > 0
    monkeypatch.setattr("augpipe.demo.DEMO_EPOCHS", 1)  # the run again is what is tested, not its training
    again = cli("demo", tmp_path / "demo", "-w", "1", "-q")  # runs again on the same folder
    assert again.exit_code == 0, again.output
    assert "after 1 epochs" in again.output or "after 1 epoch" in again.output


def test_version(cli):
    from augpipe import __version__

    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_bare_augpipe_prints_the_help_and_no_empty_error():
    done = subprocess.run(augpipe(), capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "expand" in done.stdout + done.stderr and "augpipe: error" not in done.stdout + done.stderr


def test_flags_show_no_value(cli):
    shown = cli("expand", "--help").output
    assert "--balance" in shown and "<bool>" not in shown
    assert "<int>" in shown  # options that take a value still say which


def test_an_internal_crash_is_not_exit_1(cli, monkeypatch, folder, tmp_path):
    import augpipe.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(augpipe.pipeline, "expand", broken)
    done = cli("expand", folder, "-r", "flips", "-o", tmp_path / "out", "-q")
    assert done.exit_code == 3 and "unexpected error: ZeroDivisionError: boom" in done.output


def test_usage_errors_are_one_line(tmp_path, folder):
    for args in (["--copies", "-1"], ["--shard-size", "0"], ["--workers", "0"]):
        done = subprocess.run(augpipe("expand", folder, "-r", "flips", *args), env=ENV, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("augpipe: error: ") and "{" not in lines[0], done.stderr


def test_expand_dot_puts_the_output_beside_the_folder(tmp_path, folder):
    done = subprocess.run(augpipe("expand", ".", "-r", "flips", "-w", "1", "-q"), cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder.parent / "data-expanded" / "_augpipe.json").is_file()


def test_out_at_a_dangling_symlink_and_a_recipe_folder_say_what_they_are(tmp_path, folder, cli):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    result = cli("expand", folder, "-r", "flips", "-o", link, "-q", "-w", "1")
    assert result.exit_code == 2 and "broken symlink" in result.output
    (tmp_path / "recipes-dir").mkdir()
    result = cli("expand", folder, "-r", tmp_path / "recipes-dir", "-q", "-w", "1")
    assert result.exit_code == 2 and "is a folder" in result.output
    result = cli("preview", folder, "-r", "flips", "-o", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.output


def test_a_folder_where_a_file_is_is_one_line(cli, folder, tmp_path):
    (tmp_path / "afile").write_text("mine")
    done = cli("preview", folder, "-r", "flips", "--out", tmp_path / "afile" / "x.png")
    assert done.exit_code == 2 and "a file is in the way" in done.output and "Traceback" not in done.output


@pytest.mark.parametrize("command", ["train", "demo", "preview", "inspect", "export", "check", "shape"])
def test_no_command_but_expand_speaks_of_shards_when_stopped(monkeypatch, command):
    import errno

    from augpipe.cli import _error_table, _state
    from augpipe.signals import Terminated

    monkeypatch.setitem(_state, "command", command)
    for exc in (KeyboardInterrupt(), Terminated(), OSError(errno.ENOSPC, "No space left on device")):
        message = _error_table(exc)[1]
        assert "shards" not in message and "resume" not in message and "run the same command again" in message
    monkeypatch.setitem(_state, "command", "expand")
    from augpipe import output

    monkeypatch.setattr(output, "_CHANGED", ["out"])
    assert "finished shards are kept" in _error_table(Terminated())[1]


def test_an_expand_stopped_before_it_changed_the_output_says_so(monkeypatch):
    """Interrupted while it hashed its sources, an `expand --overwrite` over a finished output had
    changed nothing, yet said "finished shards are kept; run again without --overwrite", which
    the next run then refused ("holds output made with another recipe: use --overwrite"): a new
    user's circle."""
    from augpipe import output
    from augpipe.cli import _error_table, _state

    monkeypatch.setitem(_state, "command", "expand --overwrite")
    monkeypatch.setattr(output, "_CHANGED", [])
    assert _error_table(KeyboardInterrupt()) == (130, "interrupted: the output was not changed yet; run the same "
                                                      "command again")
    monkeypatch.setattr(output, "_CHANGED", ["out"])
    assert "without --overwrite to resume" in _error_table(KeyboardInterrupt())[1]


@pytest.mark.parametrize("args", [
    ("preview", "{data}", "--out", "s3://bucket/sheet.png"),
    ("preview", "{data}", "--html", "file:///{tmp}/gallery"),
    ("train", "{data}", "--out", "s3://bucket/run"),
    ("demo", "gs://bucket/demo")])
def test_a_command_that_writes_here_refuses_a_uri_and_makes_no_folder_named_after_it(tmp_path, monkeypatch, cli,
                                                                                      args):
    monkeypatch.chdir(tmp_path)
    data = make_folder(tmp_path / "data", per_class=2)
    result = cli(*(a.format(data=data, tmp=tmp_path) for a in args))
    assert result.exit_code == 2 and "a local path is needed" in one_line(result.output)
    assert not any(p.name.endswith(":") for p in tmp_path.iterdir())


# cup in 15 of the 20 images (25 objects), cat in 6 (6), coin in 2 (2); 2 images hold nothing
IMBALANCED = [[0, 0]] * 10 + [[0, 1]] * 4 + [[1]] * 2 + [[0, 2], [2], [], []]
CLASSES = ("cup", "cat", "coin")


def test_balance_evens_out_a_detection_datasets_objects(cli, tmp_path):
    data = class_scenes(tmp_path / "data", IMBALANCED, CLASSES)
    runs = {}
    for name, extra in (("plain", ()), ("balanced", ("--balance",))):
        done = cli("expand", data, "-r", "flips", "-o", tmp_path / name, "--val-fraction", "0", "-w", "1", "-q", *extra)
        assert done.exit_code == 0, done.output
        runs[name] = (json.loads((tmp_path / name / "_augpipe.json").read_text()), done.output)
    manifest, shown = runs["balanced"]
    written = rows(tmp_path / "balanced", "train")
    per_image = {f"default/c{i:03d}.png": sorted(h) for i, h in enumerate(IMBALANCED)}
    assert all(sorted(r["objects"]["category"]) == per_image[r["source"]] for r in written)
    after = {c: sum(r["objects"]["category"].count(k) for r in written) for k, c in enumerate(CLASSES)}
    b = manifest["balance"]
    assert b["objects_before"] == {"cup": 25, "cat": 6, "coin": 2} and b["objects_after"] == after
    assert f"coin 2 -> {after['coin']}, cat 6 -> {after['cat']}, cup 25 -> {after['cup']}" in shown
    plain = runs["plain"][0]["counts"]["train"]["by_class"]
    assert max(plain.values()) / min(plain.values()) == 25 / 2
    assert max(after.values()) / min(after.values()) < 0.6 * 25 / 2
    backgrounds = [r for r in written if r["source"] in ("default/c018.png", "default/c019.png")]
    assert len(backgrounds) == 2 * 3  # 2 copies and the original each, never more
    assert "balance" not in runs["plain"][0]


def test_a_set_up_process_that_died_is_named_with_what_to_do():
    from augpipe.cli import _error_table
    from augpipe.engines.local import ProcessDied

    code, message = _error_table(ProcessDied("a set-up process ended before its results"))
    assert code == 3 and "unexpected" not in message
    assert message.startswith("the process hashing the sources died (killed, or out of memory): ")


OMP_POLICY = """
import os
from augpipe.cli import main
try:
    main(["--version"])
except SystemExit:
    pass
print(os.environ["OMP_WAIT_POLICY"])
"""


def test_the_command_line_makes_torch_threads_wait_passively_unless_told_otherwise():
    """A new user's `augpipe demo` trained at a tenth of its speed beside another busy process:
    torch's OpenMP threads spun while they waited (measured in augpipe/cli.py's main)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, kept in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env if given is None else {**env, "OMP_WAIT_POLICY": given}
        done = subprocess.run([sys.executable, "-c", OMP_POLICY], capture_output=True, text=True, env=run_env, timeout=60)
        assert done.stdout.strip().splitlines()[-1] == kept, done.stderr[-1000:]


def test_every_commands_help_is_its_docstring_in_paragraphs_without_the_sources_line_breaks():
    """A new user's: `augpipe --help` broke inspect's line after 'expanded' (the docstring's own break)."""
    import typer

    from augpipe.cli import app

    commands = typer.main.get_command(app).commands
    assert {"expand", "inspect", "shape", "train"} <= set(commands)
    for name, command in commands.items():
        paragraphs = command.help.split("\n\n")
        assert all(p and "\n" not in p for p in paragraphs), (name, command.help)
        assert " ".join(command.help.split()) == " ".join(command.callback.__doc__.split()), name
