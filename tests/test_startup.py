"""Start-up: the commands that only talk (help, recipes, the version) load none of the heavy
libraries that expanding needs, and `augpipe recipes`, which reads the bundled recipes without
validating them, says what validating them says."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from augpipe.bundled import bundled_recipes
from augpipe.cli import app
from augpipe.recipe import load_recipe
from conftest import ENV, ROOT, augpipe, make_folder, shard_hashes

HEAVY = ("albumentations", "cv2", "numpy", "pyarrow", "PIL", "scipy", "pandas", "matplotlib", "torch", "ray")
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def imported(*args, full: bool = False) -> tuple[str, set[str]]:
    """(stdout, the top-level packages imported, or with `full` every module) of `augpipe ARGS`
    in a process of its own."""
    cmd = augpipe(*args)
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", done.stderr, re.MULTILINE)
    assert "augpipe.cli" in names  # the report was read
    return done.stdout, set(names) if full else {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["recipes"], *[[c, "--help"] for c in COMMANDS]],
                         ids=" ".join)
def test_talking_commands_load_no_heavy_library(args):
    out, packages = imported(*args)
    assert out.strip()
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))


@pytest.mark.parametrize("args", [["--version"], ["recipes"]], ids=" ".join)
def test_a_command_given_no_option_loads_no_pydantic(args):
    """typer coerces option values through pydantic; its help option's unset value too, unless
    the CLI's commands make it False (60 ms of `augpipe recipes`)."""
    _, packages = imported(*args)
    assert "pydantic" not in packages


@pytest.mark.parametrize("args", [["--help"], ["export", "--help"]], ids=" ".join)
def test_help_loads_no_markdown_parser(args):
    """typer's help renderer imports rich's Markdown and Traceback for what a help in rich markup
    never shows (markdown-it alone is a fifth of an `augpipe --help`)."""
    out, modules = imported(*args, full=True)
    assert "Usage: augpipe" in out and "╭─ Options" in out  # still rich's panels
    assert not {m for m in modules if m.startswith(("markdown_it", "rich.markdown", "rich.traceback"))}


def test_the_real_markdown_and_traceback_load_after_a_help():
    from typer.testing import CliRunner

    assert CliRunner().invoke(app, ["--help"]).exit_code == 0
    from rich.markdown import Markdown
    from rich.traceback import Traceback

    assert Markdown.__module__ == "rich.markdown" and hasattr(Traceback, "from_exception")
    import typer.rich_utils

    assert typer.rich_utils.Markdown("*a*").markup == "*a*"  # the stand-in gives the real one


def test_recipes_says_what_the_validated_recipes_say():
    out, _ = imported("recipes")
    lines = [line for line in out.splitlines() if line.strip()][:-1]  # the last: how to use one
    expected = []
    for path in bundled_recipes():
        recipe = load_recipe(path)
        first = recipe.description.split(". ")[0].rstrip(".")
        expected.append(f"{recipe.name:<10} {first}.")
    assert lines == expected


def test_expand_loads_albumentations_without_the_hub_or_scipy_special(tmp_path):
    """huggingface_hub (with httpx, trio, filelock) is a third of albumentations' import time, for
    transforms on the Hub that augpipe never uses; scipy.special a fifth, for one transform."""
    src = make_folder(tmp_path / "src", per_class=3)
    _, modules = imported("expand", src, "-r", "flips", "-o", tmp_path / "out", "-w", "1", "-q", full=True)
    assert "albumentations" in modules
    assert not {m for m in modules if m.startswith(("huggingface_hub.", "httpx", "scipy.special."))}
    # nor its update check's urllib.request and http.client, for a check augpipe turns off
    assert not {"urllib.request", "http.client"} & set(modules)


def test_albumentations_update_check_is_its_own_once_loaded():
    """The no-op that stands in for albumentations.check_version while albumentations loads is
    gone after: an import of the module gives the real one (a command line's process: a library
    caller's albumentations loads its Hub helpers, which import urllib.request themselves)."""
    code = ("import sys\nfrom augpipe.recipe import import_albumentations, lean_import\nlean_import()\n"
            "import_albumentations()\n"
            "print('urllib.request' in sys.modules)\nimport albumentations\n"
            "print(hasattr(albumentations.check_version, 'fetch_version_info'), 'urllib.request' in sys.modules)\n"
            "import albumentations.check_version as c\nprint(c.check_for_updates.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.stdout.split() == ["False", "True", "True", "albumentations.check_version"], done.stderr


THREADS = """
import sys, threading
import numpy as np
from augpipe.recipe import import_albumentations, lean_import
lean_import()
A = import_albumentations()
assert "scipy.special._ufuncs" not in sys.modules
errors = []
def run():
    try:
        A.RingingOvershoot(p=1)(image=np.zeros((32, 32, 3), np.uint8))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=run) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import scipy, scipy.special
print(errors, scipy.special is sys.modules["scipy.special"], type(scipy.special).__name__)
"""


def test_scipy_special_loads_once_when_threads_first_need_it_together():
    """A hostile test: with importlib's LazyLoader (Python 3.11), 7 of 8 threads saw half a module."""
    done = subprocess.run([augpipe()[0], "-c", THREADS], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "True", "module"]


RINGING = """name: ringing
transforms:
  - RingingOvershoot: {blur_limit: [7, 15], p: 1}
  - GaussNoise: {p: 0.5}
"""


def test_the_transform_that_needs_scipy_special_loads_it_when_it_runs(tmp_path):
    """The command line's workers load scipy.special on first use: the same shards as a library
    caller's expand, whose albumentations loaded it whole."""
    from augpipe import ExpandOptions, expand

    src = make_folder(tmp_path / "src", per_class=4)
    recipe = tmp_path / "ringing.yaml"
    recipe.write_text(RINGING)
    cli = subprocess.run([*augpipe("expand", src, "-r", recipe, "-o", tmp_path / "cli", "-w", "2", "-q")],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    expand(src, recipe, tmp_path / "lib", ExpandOptions(workers=1, progress=False))
    assert shard_hashes(tmp_path / "cli") == shard_hashes(tmp_path / "lib")
    assert len(shard_hashes(tmp_path / "cli")) >= 1


DEFERRED = """
from augpipe.recipe import lean_import, import_albumentations
{lean}
A = import_albumentations()
from pydantic import BaseModel, ValidationError
from pydantic._internal._config import config_defaults
print(A.Blur.InitSchema.__pydantic_complete__, config_defaults["defer_build"])
try:
    A.Blur(blur_limit="x")
except ValueError as exc:  # albumentations' own, from pydantic's ValidationError
    print(str(exc).splitlines()[0], isinstance(exc.__cause__, ValidationError))
print(A.Blur(blur_limit=(3, 9)).blur_limit)
class Late(BaseModel):  # made after albumentations: built as pydantic builds any model
    x: int
print(Late.__pydantic_complete__)
"""


def test_a_command_line_process_builds_a_transforms_schema_when_it_is_first_used():
    """albumentations' transform schemas, in a process augpipe runs from its start, are built on
    first use (most never are in a run); their checks are the same as a library caller's."""
    said = {}
    for lean in (True, False):
        code = DEFERRED.format(lean="lean_import()" if lean else "")
        done = subprocess.run([augpipe()[0], "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        said[lean] = done.stdout.splitlines()
    assert said[True][0] == "False False" and said[False][0] == "True False"
    assert said[True][1:] == said[False][1:] and said[True][-1] == "True"
    assert said[True][1] == "2 validation errors for InitSchema True" and said[True][2] == "(3, 9)"


def test_a_library_caller_keeps_albumentations_hub_helpers():
    code = ("from augpipe.recipe import import_albumentations; import_albumentations(); "
            "import albumentations.core.hub_mixin as h; print(h.is_huggingface_hub_available)")
    done = subprocess.run([augpipe()[0], "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    installed = importlib.util.find_spec("huggingface_hub") is not None
    assert done.returncode == 0 and done.stdout.strip() == str(installed), done.stderr[-2000:]


FORKSERVER_CALLER = """
import multiprocessing as mp, sys, tempfile
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import make_folder
from augpipe import ExpandOptions, expand


def probe(_):
    import albumentations.core.hub_mixin as h
    return h.is_huggingface_hub_available


if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp(dir={tmp!r}))
    expand(make_folder(tmp / "src", per_class=6), "flips", tmp / "out",
           ExpandOptions(workers=2, shard_size=20_000, progress=False))
    with mp.get_context("forkserver").Pool(1) as pool:
        print(pool.map(probe, [0])[0])
"""


def test_a_library_callers_own_forkserver_processes_keep_albumentations_hub_helpers(tmp_path):
    """augpipe's workers for a library caller come from multiprocessing's one fork server, which
    the caller's own forkserver pools share: what augpipe preloads there must leave albumentations
    whole (found by a hostile test: the Hub helpers were blocked there too)."""
    script = tmp_path / "caller.py"
    script.write_text(FORKSERVER_CALLER.format(tests=str(ROOT / "tests"), tmp=str(tmp_path)))
    done = subprocess.run([augpipe()[0], str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                          timeout=300)
    installed = importlib.util.find_spec("huggingface_hub") is not None
    assert done.returncode == 0 and done.stdout.strip() == str(installed), done.stderr[-2000:]


@pytest.mark.parametrize("working_thread", [False, True], ids=["handlers", "a thread still working"])
def test_a_command_leaves_after_the_exit_handlers_and_the_threads_still_working(tmp_path, working_thread):
    """`augpipe` skips the interpreter's teardown at its end, never what Python runs at exit: the
    exit handlers (multiprocessing's, logging's, a library's) and a thread that is not a daemon."""
    (tmp_path / "sitecustomize.py").write_text(f"""
import atexit, pathlib, threading, time
here = pathlib.Path({str(tmp_path)!r})
atexit.register(lambda: (here / "handler").write_text("ran"))
if {working_thread}:
    threading.Thread(target=lambda: (time.sleep(1), (here / "thread").write_text("done"))).start()
""")
    env = {**ENV, "PYTHONPATH": f"{tmp_path}:{ENV.get('PYTHONPATH', '')}"}
    done = subprocess.run(augpipe("recipes"), capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0 and "classification" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "handler").read_text() == "ran"
    assert (tmp_path / "thread").exists() == working_thread


def test_a_command_started_without_its_output_streams_ends_as_it_would_with_them(tmp_path):
    """Python gives no sys.stdout (sys.stderr) where the descriptor was closed at the start: the
    exit goes on without it."""
    cmd = " ".join(augpipe("--version"))
    for closed, code in (("1", 0), ("2", 0)):
        done = subprocess.run(["sh", "-c", f"exec {cmd} {closed}>&-"], capture_output=True, text=True, cwd=ROOT,
                              env=ENV, timeout=120)
        assert done.returncode == code and "Traceback" not in done.stderr, (closed, done.stderr[-2000:])
    done = subprocess.run(["sh", "-c", f"exec {' '.join(augpipe('expand', tmp_path / 'none', '-r', 'flips'))} 2>&-"],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    assert done.returncode == 2


def test_a_program_that_calls_main_itself_carries_on_after_it(tmp_path):
    """`main(argv)` ends by SystemExit, as Python's exit: the caller's except, files and handlers
    stay its own."""
    script = tmp_path / "host.py"
    script.write_text(f"""
from augpipe.cli import main
log = open({str(tmp_path / 'log')!r}, "w")
for argv in (["recipes"], ["--version"], ["expand", {str(tmp_path / 'none')!r}, "-r", "flips"]):
    try:
        main(argv)
    except SystemExit as exc:
        log.write(f"{{argv[0]}} {{exc.code}}\\n")
print("host: all done")
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    assert done.returncode == 0 and "host: all done" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "log").read_text().split() == ["recipes", "0", "--version", "0", "expand", "2"]
