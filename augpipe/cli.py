"""The `augpipe` command: each command parses, calls the library, prints.

Errors become one line each, from the table in `_report`, with `--debug` for the traceback.
"""


import errno
import functools
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from augpipe import __version__
from augpipe.engines import ENGINES
from augpipe.errors import AugpipeError, UsageError, one_of
from augpipe.formats import FORMATS, WRITERS, module as format_module
from augpipe.options import DEVICES, SPLIT_BY, ExpandOptions, TrainOptions
from augpipe import signals
from augpipe.signals import Terminated



def _unset_help_is_false(cls: type) -> type:
    """Typer coerces each option's value through a pydantic TypeAdapter unless it is a bool
    already; its help option's unset value is None, so every command imported pydantic (60 ms of
    a `augpipe recipes`) to coerce it. With False there, nothing is coerced."""
    class Command(cls):
        def get_help_option(self, ctx):
            option = super().get_help_option(ctx)
            if option is not None:
                option.default = False
            return option

        def format_help(self, ctx, formatter):
            _import_rich_help()
            return super().format_help(ctx, formatter)

    return Command


def _import_rich_help() -> None:
    """typer's help renderer imports rich's Markdown (with markdown-it) and Traceback at its top, a
    quarter of an `augpipe --help`, for help written in Markdown and for tracebacks: neither is
    used by a help in rich markup. Both stand in as classes that load the real one when called."""
    if "typer.rich_utils" in sys.modules:
        return
    stand_ins = {name: _LoadsOnUse(name, cls) for name, cls in
                 (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback")) if name not in sys.modules}
    for name, module in stand_ins.items():
        sys.modules[name] = module
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]  # the next import of it loads the real module


class _LoadsOnUse(type(sys)):
    """A module whose one class, called or asked for an attribute, is the real module's."""

    def __init__(self, name: str, cls: str):
        super().__init__(name)
        module = name

        class Real(type):
            def __getattr__(self, key):
                return getattr(self.real(), key)

            def __call__(self, *args, **kwargs):
                return self.real()(*args, **kwargs)

            def real(self):
                import importlib

                return getattr(importlib.import_module(module), cls)

        setattr(self, cls, Real(cls, (), {}))


_Group, _Command = _unset_help_is_false(typer.core.TyperGroup), _unset_help_is_false(typer.core.TyperCommand)
app = typer.Typer(
    cls=_Group,
    name="augpipe",
    help="Turn a folder of labelled images into an augmented, training-ready Parquet dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": bool(os.environ.get("AUGPIPE_DEBUG"))}


def _flag_type(display_type_rich: Callable) -> Callable:
    """A flag takes no value: typer's help shows `<bool>` beside it, which invites `--balance yes`."""
    def shown(self, ctx):
        return None if getattr(self, "is_flag", False) else display_type_rich(self, ctx)

    return shown


typer.core.TyperOption.display_type_rich = _flag_type(typer.core.TyperOption.display_type_rich)


# ---------------------------------------------------------------- errors, in one place

# What each command interrupted part-way (or stopped by a full disk) leaves, and what to do
_RERUN = {
    "expand": "finished shards are kept; run the same command again to resume",
    "expand --overwrite": "finished shards are kept; run the same command again without --overwrite to resume (with "
                          "it, every shard is written anew)",
    "export": "the export is unfinished; run the same command again to write it again",
    "train": "train writes model.pt and its metrics only at the end of a run, so nothing of this one is kept; "
             "run the same command again to train from the start",
    "demo": "what the demo made so far stays in its folder; run the same command again to finish it",
    "preview": "the contact sheet was not finished; run the same command again",
    "inspect": "nothing was changed (inspect only reads); run the same command again",
    "check": "nothing was changed (check only reads); run the same command again",
    "studio": "the studio stopped; a recipe is written only when Save is pressed",
}
_RERUN_ANY = "nothing was changed; run the same command again"


CRASHED = 3  # augpipe itself failed (1 is "done, but problems found")


def _output_changed() -> bool:
    import sys

    output = sys.modules.get("augpipe.output")  # not imported: nothing got as far
    return output is not None and output.changed()


def _error_table(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, AugpipeError):
        return exc.exit_code, str(exc)
    rerun = _RERUN.get(_state.get("command"), _RERUN_ANY)
    if _state.get("command", "").startswith("expand") and not _output_changed():
        rerun = "the output was not changed yet; run the same command again"
    if isinstance(exc, KeyboardInterrupt):
        return 130, f"interrupted: {rerun}"
    if isinstance(exc, Terminated):
        return 143, f"terminated: {rerun}"
    if isinstance(exc, PermissionError):
        return 2, f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.errno in _FULL:
        where = f" writing {exc.filename}" if exc.filename else ""
        return 2, f"{exc.strerror or exc}{where}: free some space (or raise the limit); {rerun}"
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        # a folder was to be made where a file is (`--out afile/sub`)
        return 2, f"cannot make a folder at {exc.filename}: a file is in the way ({exc.strerror}): choose another path"
    if isinstance(exc, OSError):
        return 2, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, MemoryError):
        return CRASHED, "out of memory: try fewer --workers, or smaller --copies or --max-pixels"
    pool = sys.modules.get("concurrent.futures.process")  # loaded where a pool ran
    if pool is not None and isinstance(exc, pool.BrokenProcessPool):
        return CRASHED, f"a worker process died (killed, or out of memory): {rerun}"
    local = sys.modules.get("augpipe.engines.local")
    if local is not None and isinstance(exc, local.ProcessDied):
        return CRASHED, f"the process hashing the sources died (killed, or out of memory): {rerun}"
    command = (_state.get("command") or "COMMAND").split()[0]
    return CRASHED, (f"unexpected error: {type(exc).__name__}: {exc} (for the traceback: augpipe --debug {command} "
                     "..., or AUGPIPE_DEBUG=1)")


_FULL = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT") if hasattr(errno, n)}


def _report(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _state["command"] = func.__name__
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:  # `augpipe transforms | head`: the reader left, nothing to say
            sys.stderr.close()
            raise typer.Exit(1) from None
        except BaseException as exc:  # every failure leaves as one line and an exit code
            if isinstance(exc, (KeyboardInterrupt, Terminated)):
                signals.handled()  # this command's end: a later one in this process starts clean
            if _state["debug"]:
                raise
            code, message = _error_table(exc)
            typer.echo(f"augpipe: error: {message}", err=True)
            raise typer.Exit(code) from None

    return wrapper


def command(*args, **kwargs) -> Callable:
    def register(func: Callable) -> Callable:
        # a docstring's paragraphs as one line each: the help keeps the source's line breaks
        paragraphs = (func.__doc__ or "").strip().split("\n\n")
        kwargs.setdefault("help", "\n\n".join(" ".join(p.split()) for p in paragraphs))
        return app.command(*args, cls=_Command, **kwargs)(_report(func))

    return register


# ---------------------------------------------------------------- shared options

def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", text.lower())
    if not m:
        raise typer.BadParameter(f"'{text}' is not a size: write e.g. 256MB, 1GB or 500000")
    unit = (m.group(2) or "").rstrip("b").rstrip("i")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[unit]
    if "i" in (m.group(2) or ""):
        scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit]
    size = float(m.group(1)) * scale  # inf for 400 digits
    if size < 1:
        raise typer.BadParameter("the size must be positive")
    if size >= 2**63:
        raise typer.BadParameter("the size is more than any disk holds")
    return int(size)


RecipeOpt = Annotated[str, typer.Option("--recipe", "-r", help="A recipe file, or a bundled recipe's name (see `augpipe recipes`).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Run seed: the same inputs, recipe and seed give byte-identical shards.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-w", min=1, help="Worker processes. Default: the machine's cores.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"augpipe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Turn a folder of labelled images into an augmented, training-ready Parquet dataset."""
    _state["debug"] = debug or bool(os.environ.get("AUGPIPE_DEBUG"))


# ---------------------------------------------------------------- commands

def _start_workers(workers: int | None, engine: str = "local") -> None:
    """Before anything else: workers either fork from this process (when `main` runs it) or
    start from a fork server that takes about a second to import what they need."""
    if _state.get("own_process"):
        from augpipe.recipe import lean_import

        lean_import()
    if engine == "local":
        from augpipe.engines.local import default_workers, own_process, start_workers_early

        if (workers or default_workers()) > 1:
            if _state.get("own_process"):
                own_process()
            start_workers_early()

    signals.check()  # a signal lost in the imports above (`signals.lost`) is raised here


FormatOpt = Annotated[str, typer.Option("--format", help=f"The source's layout: {one_of(['auto', *FORMATS])}.")]
VocZeroBasedOpt = Annotated[bool, typer.Option("--voc-zero-based", help="VOC files hold 0-based pixel edges (tools that write xmin = x); default: the devkit's 1-based xmin/ymin.")]
SourceArg = Annotated[str, typer.Argument(metavar="SOURCE", help="Image folder or URI (s3://, gs://): one sub-folder per class; optional train/ val/ test/.")]


@command()
def expand(
    source: SourceArg,
    recipe: RecipeOpt,
    out: Annotated[Optional[str], typer.Option("--out", "-o", metavar="OUT", help="Output folder or URI. Default: SOURCE-expanded, beside the source.")] = None,
    copies: Annotated[Optional[int], typer.Option("--copies", "-k", min=0, help="Augmented copies per training image. Default: the recipe's.")] = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.99, help="Share of source images held out for validation when there are no split folders (0 disables).")] = 0.1,
    balance: Annotated[bool, typer.Option("--balance", help="More copies for rare classes. Classification: every class about as many training rows as the largest. Detection and segmentation: repeat-factor sampling (LVIS): an image's rows times max(1, sqrt(t / f)) for the rarest class it holds, f that class's share of the training images; images without objects (masks of background only) never get more.")] = False,
    repeat_threshold: Annotated[Optional[float], typer.Option("--repeat-threshold", metavar="T", help="The t of --balance for detection and segmentation, a share of images: classes in fewer get more rows. Default: the share of the most common class, the largest t that never repeats an image for that class alone: every rarer class is lifted by sqrt(its rarity); LVIS's 0.001 is for a thousand classes over 100k images, and a set of a few classes over a few hundred images has no class that rare.")] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", parser=_parse_size, metavar="SIZE", help="Largest shard, about: e.g. 256MB, 1GB.")] = "256MB",
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip images with more pixels than this (decompression bombs; about 36 bytes a pixel at the peak, per worker).")] = 25_000_000,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first input that would be skipped.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the augpipe output in OUT (only what augpipe wrote there): one made with other arguments (recipe, seed, options or source), or this run's own, every shard written anew.")] = False,
    layout: Annotated[str, typer.Option("--layout", help="auto, classes (every top folder a class) or splits (train/val/test folders).")] = "auto",
    split_by: Annotated[str, typer.Option("--split-by", help=f"{one_of(SPLIT_BY)}: by content, identical files share a split (every source is read once more).")] = "content",
    engine: Annotated[str, typer.Option("--engine", help=f"{one_of(ENGINES)}: local runs worker processes; ray a Ray cluster (RAY_ADDRESS, or a local one started for the run).")] = "local",
    format: FormatOpt = "auto",
    voc_zero_based: VocZeroBasedOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Augment an image folder into Parquet shards (train/validation/test) with a manifest."""
    if overwrite:
        _state["command"] = "expand --overwrite"  # what resumes an interrupted run is said without it
    _start_workers(workers, engine)
    from augpipe.pipeline import expand as run_expand
    from augpipe.summary import expand_summary

    options = ExpandOptions(
        copies=copies, workers=workers, seed=seed, val_fraction=val_fraction, balance=balance,
        repeat_threshold=repeat_threshold, shard_size=shard_size, max_pixels=max_pixels, strict=strict,
        overwrite=overwrite, progress=not quiet, layout=layout, split_by=split_by, engine=engine, format=format,
        voc_zero_based=voc_zero_based,
    )
    import warnings

    from augpipe.errors import ExpandWarning

    with warnings.catch_warnings():  # the summary says them
        warnings.simplefilter("ignore", ExpandWarning)
        manifest = run_expand(source, recipe, out, options)
    typer.echo("\n".join(expand_summary(manifest)))


@command()
def demo(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="Where to put the sample data and its expansion (new or empty, or an earlier demo's).")] = Path("augpipe-demo"),
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Make a small labelled sample dataset (no download), expand it, summarise, and preview it."""
    _local(folder, "FOLDER")
    _start_workers(workers)
    from augpipe.demo import run_demo
    from augpipe.summary import expand_summary

    data, manifest, sheet = run_demo(folder, workers=workers, seed=seed, progress=not quiet)
    typer.echo(f"sample dataset: {data}  ({sum(c['sources'] for c in manifest['counts'].values())} images)")
    typer.echo("\n".join(expand_summary(manifest)))
    typer.echo(f"preview: {sheet}")
    from augpipe.demo import train_demo, train_missing

    result = train_demo(folder, seed=seed, progress=not quiet, log=lambda line: None)
    if result is None:
        missing = " and ".join("PyTorch" if name == "torch" else name for name in train_missing())
        typer.echo(f"training: skipped, {missing} {'is' if ' and ' not in missing else 'are'} not installed "
                   "(pip install 'augpipe[train]' adds it)")
    else:
        typer.echo(f"training: validation accuracy {result['final_val_acc']:.3f} after {_plural(len(result['history']), 'epoch')} "
                   f"(always guessing the training set's commonest class, {result['majority_class']}: {result['majority_baseline']:.3f}); curves: {folder / 'run' / 'curves.png'}")
    typer.echo(f"next: augpipe inspect {manifest['out']} --verify   or   augpipe preview {data} --recipe flips")


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # what a URI given as a Path has become (s3:/b/x)


def _local(path: Path | None, what: str) -> None:
    """A path this command writes on this machine: a URI is refused, not made a folder named `s3:`."""
    if path is not None and _URI.match(str(path)):
        raise UsageError(f"{what} {str(path).replace(':/', '://', 1)}: a local path is needed (this command writes "
                         "on this machine, not to an object store)")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@command()
def preview(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="An image folder (needs --recipe), or an expanded dataset (folder or URI).")],
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="A recipe file or bundled name; not needed for an expanded dataset.")] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, max=100, help="Source images, one a row, drawn across classes.")] = 6,
    copies: Annotated[Optional[int], typer.Option("--copies", "-k", min=0, max=32, help="Augmented copies a row. Default: the recipe's (from shards: all, at most 8).")] = None,
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="Where to write the contact sheet (.png or .jpg).")] = Path("preview.png"),
    html_dir: Annotated[Optional[Path], typer.Option("--html", metavar="DIR", help="Also write a static page with every tile and its parameters to this folder (new, empty, or an earlier gallery).")] = None,
    tile: Annotated[int, typer.Option("--tile", min=32, max=512, help="Tile size in pixels.")] = 128,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.99, help="As for expand: previewed images are training images.")] = 0.1,
    split_by: Annotated[str, typer.Option("--split-by", help=f"As for expand ({one_of(SPLIT_BY)}): it decides the training images, and the donors of multi-image steps.")] = "content",
    format: FormatOpt = "auto",
    voc_zero_based: VocZeroBasedOpt = False,
) -> None:
    """Show what a recipe does (originals and copies, captioned) before expanding, or what shards hold."""
    from augpipe.dataset import is_dataset
    from augpipe.preview import check_sheet_path, preview_shards, preview_source, write_html, write_sheet

    _local(out, "--out")
    _local(html_dir, "--html")
    check_sheet_path(out)
    _outside_source(out, source, "--out")
    if html_dir is not None:
        _outside_source(html_dir, source)
    if is_dataset(source):
        result = preview_shards(source, rows=rows, copies=copies, seed=seed)
    else:
        _no_shards(source)
        if recipe is None:
            raise UsageError(f"{source} is an image folder: preview needs --recipe (an expanded dataset does not)")
        result = preview_source(source, recipe, rows=rows, copies=copies, seed=seed, val_fraction=val_fraction,
                                split_by=split_by, format=format, voc_zero_based=voc_zero_based)
    typer.echo(f"contact sheet: {write_sheet(result, out, tile)}")
    if html_dir is not None:
        typer.echo(f"gallery: {write_html(result, html_dir)}")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} (listed under the sheet)")


@command()
def inspect(
    path: Annotated[str, typer.Argument(metavar="PATH", help="An expanded dataset (folder or URI) or a source folder in any format expand reads.")],
    verify: Annotated[bool, typer.Option("--verify", help="Re-read every shard: checksums, row counts, images, labels, splits. Exit 1 on a problem.")] = False,
    source: Annotated[Optional[str], typer.Option("--source", metavar="DIR", help="With --verify: also compare every row's source_sha256, and every donor's, with the source files as they are now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The same facts as JSON.")] = False,
    html_dir: Annotated[Optional[Path], typer.Option("--html", metavar="DIR", help="Also write the health report as a page with plots and a thumbnail of each problem (an expanded dataset: over its rows).")] = None,
    fail_on: Annotated[Optional[str], typer.Option("--fail-on", metavar="CHECKS", help="Exit 1 when a check of these finds anything: groups (labels, coverage, images, duplicates, leakage, all) or check names (box_outside, exact_leak, ...: --json lists each problem's), comma-separated.")] = None,
    format: FormatOpt = "auto",
    layout: Annotated[str, typer.Option("--layout", help="auto, classes (every top folder a class) or splits (train/val/test folders).")] = "auto",
    quiet: QuietOpt = False,
) -> None:
    """A source's health report (labels, images, duplicates, leakage), or one screen on an expanded
    dataset (with --html or --fail-on, its rows' health report too)."""
    import importlib.util
    import json

    from augpipe.health import fail_on_names, failing

    if source is not None and not verify:
        raise UsageError("--source compares rows with their sources: use it with --verify")
    if source is not None:
        _source_folder(source)
    names = fail_on_names(fail_on)
    _local(html_dir, "--html")
    if html_dir is not None:
        from augpipe.health.html import claim

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--html draws its plots with matplotlib: pip install matplotlib (or augpipe[report])")
        _outside_source(html_dir, path)
        claim(html_dir)
    facts, lines, health = _inspected(path, verify, source, format, layout, not quiet, html_dir is not None or bool(names))
    typer.echo(json.dumps(facts, indent=2, ensure_ascii=False) if as_json else "\n".join(lines))
    if html_dir is not None:
        from augpipe.health.html import write_report

        typer.echo(f"report: {write_report(health, html_dir)}", err=as_json)
    found = failing(health.page()["problems"], names) if health is not None else []
    if found:
        typer.echo(f"--fail-on: {', '.join(found)} found problems", err=True)
    if found or (verify and facts.get("problems")):
        raise typer.Exit(1)


def _source_folder(source: str) -> None:
    """--source names a folder that is there: else every row was "vanished during the run"."""
    from augpipe.store import open_store

    store = open_store(source)
    if not store.is_dir():
        what = "is a file, not a folder" if store.exists() else "does not exist"
        raise UsageError(f"--source {source} {what}: give the folder the dataset was expanded from")


def _inspected(path: str, verify: bool, source, format: str, layout: str, progress: bool, checked: bool):
    """(facts, text, health report) of a source folder, or of an expanded dataset (its health
    report, over its rows, when `checked`; else None)."""
    from augpipe.dataset import is_dataset
    from augpipe.health import source_health
    from augpipe.health.report import problem_lines, source_lines
    from augpipe.inspection import inspect_output, output_report
    from augpipe.layout import MANIFEST

    if is_dataset(path):
        if not checked:
            facts = inspect_output(path, verify=verify, source=source, progress=progress)
            return facts, output_report(facts), None
        from augpipe.health.expanded import dataset_health

        health = dataset_health(path, verify=verify, source=source, progress=progress)
        return health.facts, output_report(health.facts) + problem_lines(health.facts["health"]["problems"]), health
    _no_shards(path)
    if verify:
        raise UsageError(f"--verify re-reads an expanded dataset's shards; {path} is a source folder (no "
                         f"{MANIFEST}): its health report is this command without --verify")
    health = source_health(path, format=format, layout=layout, progress=progress)
    return health.facts, source_lines(health.facts), health


def _no_shards(path: str) -> None:
    """One line where a folder of augpipe's shards is no dataset (yet, or any more), which is no
    source folder either: an expand that has not finished, or shards whose manifest was deleted."""
    from augpipe.manifest import check_finished
    from augpipe.store import open_store

    check_finished(open_store(path))


def _outside_source(written: Path, source: str, flag: str = "--html") -> None:
    """A report or sheet written inside the source would be read as part of it next time (a class
    `report`, a training image `sheet.png`)."""
    from augpipe.store import is_uri

    if not is_uri(source) and written.resolve().is_relative_to(Path(source).resolve()):
        raise UsageError(f"{flag} {written} is inside {source}: it would be read as part of it next time; "
                         "write it beside")


def _export_formats() -> str:
    """`yolo, coco or voc (detection), imagefolder (classification), masks (segmentation).`"""
    by_kind: dict[str, list[str]] = {}
    for name in WRITERS:
        for kind in format_module(name).kinds:
            by_kind.setdefault(kind, []).append(name)
    return ", ".join(f"{one_of(names)} ({kind})" for kind, names in by_kind.items()) + "."


def _export_help(key: str) -> str:
    """An export option's help, from the format that owns it (`formats/<name>.py`'s OPTIONS)."""
    owner = next(name for name in WRITERS if key in format_module(name).OPTIONS)
    option = format_module(owner).OPTIONS[key]
    return f"{owner}: {option.text() + '; ' if option.choices else ''}{option.help}."


@command()
def export(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help="An expanded dataset (folder or URI).")],
    format: Annotated[str, typer.Option("--format", "-f", help=_export_formats())],
    out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="A new or empty folder (or an earlier export).")],
    yolo_task: Annotated[Optional[str], typer.Option("--yolo-task", metavar="TASK", help=_export_help("yolo_task"))] = None,
    coco_layout: Annotated[Optional[str], typer.Option("--coco-layout", metavar="LAYOUT", help=_export_help("coco_layout"))] = None,
    voc_zero_based: Annotated[bool, typer.Option("--voc-zero-based", help=_export_help("voc_zero_based"))] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write an expanded dataset back out as files, for tools that read only folders (ultralytics: yolo)."""
    from augpipe.export import export as run_export

    done = run_export(dataset, format, out, progress=not quiet, yolo_task=yolo_task, coco_layout=coco_layout,
                      voc_zero_based=voc_zero_based)
    shown = ", ".join(f"{split} {n:,}" for split, n in done["images"].items())
    task = f" ({done['yolo_task']})" if "yolo_task" in done else ""
    typer.echo(f"exported {done['format']}{task} to {done['out']}: {shown} images")
    for note in done["notes"]:
        typer.echo(note)
    if done["masks_left_out"]:
        typer.echo(f"the instance masks are not written: {done['format']}{task} holds boxes only "
                   "(coco, or yolo --yolo-task segment, keeps them)")
    if done["renamed"]:
        typer.echo(f"{_plural(done['renamed'], 'file')} renamed with a short hash of the source path "
                   "(their names would have collided, e.g. a.png re-encoded beside a.jpg)")
    if changed := done["changed_shards"]:
        from augpipe.layout import listed

        one = len(changed) == 1
        typer.echo(f"warning: {_plural(len(changed), 'shard')} changed since expand wrote {'it' if one else 'them'} "
                   f"({listed(changed, 3)}): exported as "
                   f"{'it is' if one else 'they are'} now; augpipe inspect --verify lists the damage", err=True)


@command()
def transforms(
    group: Annotated[Optional[str], typer.Argument(
        help="Only this group (e.g. geometric, noise), or this transform (e.g. GaussNoise).")] = None,
) -> None:
    """The transforms a recipe may use, grouped, with their parameters and defaults (from albumentations)."""
    from augpipe.catalog import catalog, chosen

    groups = catalog()
    if group is not None:
        try:
            groups = chosen(groups, group)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    for name, items in groups.items():
        typer.echo(f"{name}:")
        for transform, params in items:
            shown = ", ".join(f"{p}={d}" for p, d in params)
            typer.echo(f"  {transform}({shown})")
        if any(p == "rotate_method" for _, params in items for p, _ in params):
            typer.echo("  (rotate_method: where a step does not set it, the recipe's rotate_method, ellipse by default,"
                       " not albumentations' largest_box)")


def _need_torch(what: str) -> None:
    import importlib.util

    missing = [m for m in ("torch", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{what} needs {' and '.join(missing)}: pip install 'augpipe[train]'")


_ARCH_HELP = "The model, layers joined by '-': cNkK conv (+sS stride, +pP or psame padding), r ReLU, mK/aK/lK max/avg/L2 pool (+sS), dP dropout, gap/gmp global pool; {classes} is the class count."
_SIZE_HELP = "Input height and width: images are resized to it."
_BATCH_HELP = "Images per optimiser step (and per evaluation batch); memory grows with it, see the layer table's memory line."
_TASK_HELP = ("auto: the dataset's (a detection dataset with at most one object an image: localisation); or "
              "classification, localisation (one object: class and box; the largest box of each image), "
              "detection (CenterNet-style heads, mAP@0.5) or segmentation (a class a pixel).")
ArchOpt = Annotated[str, typer.Option("--arch", help=_ARCH_HELP)]
SizeOpt = Annotated[int, typer.Option("--size", min=4, max=1024, help=_SIZE_HELP)]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help=_BATCH_HELP)]


@command()
def train(
    path: Annotated[str, typer.Argument(metavar="DATASET", help="An expanded dataset (folder or URI) with a validation split.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where model.pt, metrics.json, curves.png and confusion.png (classification) or predictions.png (the other tasks) go: a new or empty folder, or one train wrote before (that run's files are replaced); a folder of other files is refused.")] = Path("runs/train"),
    task: Annotated[str, typer.Option("--task", help=_TASK_HELP)] = "auto",
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, help="Passes over the training split.")] = 10,
    compare: Annotated[bool, typer.Option("--compare", help="Also train the same model from the same weights on the originals only, for the same number of optimiser steps, and print the augmentation lift.")] = False,
    arch: Annotated[Optional[str], typer.Option("--arch", show_default=False, help=f"{_ARCH_HELP} Default: the task's (above), or the --init model's.")] = None,
    size: Annotated[Optional[int], typer.Option("--size", min=4, max=1024, show_default=False, help=f"{_SIZE_HELP} Default: 32 for classification, 64 for the other tasks, or the --init model's.")] = None,
    batch_size: BatchOpt = 64,
    lr: Annotated[float, typer.Option("--lr", min=1e-6, help="Adam's learning rate.")] = 2e-3,
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from this model.pt, with its --arch and --size (giving different ones is refused). Only tensors and plain data are loaded from it. Classification only.")] = None,
    freeze: Annotated[Optional[str], typer.Option("--freeze", help="'features': train only the final 1×1 classifier (transfer learning); needs --init.")] = None,
    device: Annotated[str, typer.Option("--device", help=f"{one_of(DEVICES)}; auto picks CUDA, else Apple's MPS, when present.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the initial weights, the batch order and dropout: the same seed repeats a CPU run exactly. 0 to 2^64 − 1 (torch's seeds are 64 bits).")] = 0,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="With --compare: both runs again with --seed + 1, + 2, ... up to this many seeds, and the lift's spread over them (N times the training time).")] = 1,
    quiet: QuietOpt = False,
) -> None:
    """Train a tiny CNN on the shards: does the data learn, and what does augmentation add?

    The task comes from the dataset, or --task: classification (accuracy), localisation (one
    object: class accuracy, mean IoU, IoU ≥ 0.5 share), detection (mAP@0.5) or segmentation
    (pixel accuracy, mean IoU), each against a trivial baseline, validated on untouched originals.

    The architecture grammar (--arch), layers joined by '-':
    cNkK a convolution with N channels and kernel K, optionally followed by sS (stride, default 1)
    and pP (padding, default 0; psame is (K − 1)/2); r ReLU; mK / aK / lK max / average / L2
    pooling, optionally sS (stride, default K); dP dropout with probability P (training only);
    gap / gmp global average / max pooling; {classes} is the class count, as in the classifier
    c{classes}k1. For classification the string is the whole network; for the other tasks it is
    the backbone (no global pooling) and the task adds its heads.
    Each size is O = (W − K + 2P)/S + 1 and must be a whole number of at least 1.

    Default --arch and --size, by task:
    classification c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-d0.3-c{classes}k1-gap, 32;
    localisation c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-m2-c64k3p1-r, 64;
    detection, segmentation c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-c64k3p1-r, 64.
    """
    _local(out, "--out")
    _need_torch("augpipe train")
    opts = TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, arch=arch, size=size, seed=seed, device=device,
                        compare=compare, seeds=seeds, init=str(init) if init else None, freeze=freeze, task=task,
                        progress=not quiet, log=typer.echo)
    from augpipe.training.run import output_files, summary_lines, train as run_train

    result = run_train(path, out, opts)
    typer.echo("\n".join(summary_lines(result)))
    typer.echo("wrote " + ", ".join(str(out / name) for name in output_files(result)))


@command()
def shape(
    arch: Annotated[Optional[str], typer.Option("--arch", show_default=False, help=f"{_ARCH_HELP} Default: the --task's (augpipe train --help lists them).")] = None,
    size: SizeOpt = 32,
    classes: Annotated[int, typer.Option("--classes", min=1, help="The class count, for {classes}.")] = 10,
    batch_size: BatchOpt = 64,
    task: Annotated[str, typer.Option("--task", help="classification (the string is the whole network), or localisation, detection, segmentation (the string is the backbone: the table adds the task's heads).")] = "classification",
) -> None:
    """The layer table of an architecture: each output size by O = (W − K + 2P)/S + 1, parameters, and
    the memory of a training step."""
    from augpipe.training.model import DEFAULT_ARCHS, format_table, task_table

    if task not in DEFAULT_ARCHS:
        raise UsageError(f"--task is one of {', '.join(DEFAULT_ARCHS)}; not '{task}'")
    arch = DEFAULT_ARCHS[task] if arch is None else arch
    rows = task_table(task, arch, size, classes, complete=False)
    typer.echo("\n".join(format_table(rows, size, batch=batch_size)))


@command("recipes")
def list_recipes() -> None:
    """The bundled recipes, one line each."""
    from augpipe.bundled import bundled_recipes, summary

    for path in bundled_recipes():
        name, description = summary(path)
        first = description.split(". ")[0].rstrip(".")
        typer.echo(f"{name:<10} {first}.")
    typer.echo("\nuse one by name: augpipe expand data/ --recipe classic   (show one: augpipe check classic)")


_CHECK_TASK_DEFAULT = "classification"


@command()
def check(
    recipe: Annotated[str, typer.Argument(help="A recipe file, or a bundled recipe's name.")],
    task: Annotated[str, typer.Option("--task", help="The target kind of the dataset it is for: classification, detection (boxes), detection-masks (boxes and instance masks), segmentation, or another kind (a wrong name lists them).")] = _CHECK_TASK_DEFAULT,
) -> None:
    """Validate a recipe, run it on a test image, and say what it will do. Exit 1 when it has warnings."""
    from augpipe.dryrun import check_recipe
    from augpipe.recipe import check_for_kind, describe, load_recipe
    from augpipe.targets import check_choices

    kinds = check_choices()
    if task not in kinds:
        raise UsageError(f"--task is one of {', '.join(kinds)}; not '{task}'")
    r = load_recipe(recipe)
    kind = kinds[task]
    try:
        kind_warnings = check_for_kind(r, kind)
    except AugpipeError as exc:
        if task != _CHECK_TASK_DEFAULT:
            raise
        raise type(exc)(f"{exc} (for another kind of dataset: augpipe check RECIPE --task KIND)") from None
    found = check_recipe(r, kind=kind)
    out = r.output
    resize = f", resized to {out.resize.width}×{out.resize.height}" if out.resize else ""
    quality = f" quality {out.quality}" if out.format != "png" else ""
    typer.echo(f"{r.path}: recipe '{r.name}' is valid")
    if r.description:
        typer.echo(f"  {r.description}")
    kept = "the original kept as copy 0" if r.keep_original else "the original not kept"
    typer.echo(f"  {r.copies} augmented copies per training image, {kept}; output {out.format}{quality}{resize}")
    typer.echo("  transforms, in order (each fires with probability p):")
    for line in describe(r):
        typer.echo(f"    {line}")
    for note in r.notes:
        typer.echo(f"  note: {note}")
    warnings = [*r.warnings, *found.warnings, *kind_warnings]
    for warning in warnings:
        typer.echo(f"  warning: {warning}")
    if warnings:
        raise typer.Exit(1)


@command()
def studio(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="An image folder or URI in any format expand reads.")],
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="The recipe file to design (Save writes it, keeping the previous version as .bak; a new .yaml name is made on the first save), or a bundled name to start from. Default: a bundled recipe for the dataset's kind.")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port; 0 takes a free one.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="The address to listen on. Anything but loopback lets other machines reach the studio (they still need the token).")] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser: only print the URL.")] = False,
    seed: SeedOpt = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.99, help="As for expand: only training images are shown.")] = 0.1,
    split_by: Annotated[str, typer.Option("--split-by", help=f"As for expand ({one_of(SPLIT_BY)}).")] = "content",
    format: FormatOpt = "auto",
    layout: Annotated[str, typer.Option("--layout", help="auto, classes (every top folder a class) or splits (train/val/test folders).")] = "auto",
    voc_zero_based: VocZeroBasedOpt = False,
) -> None:
    """Design a recipe live in the browser, on SOURCE's own images: every tile is the row expand writes."""
    import secrets
    import webbrowser

    _need_studio()
    from augpipe.studio import Studio
    from augpipe.studio.server import EVERY_ADDRESS, LOOPBACK, bind, serve, url_host

    session = Studio(source, recipe, format=format, layout=layout, voc_zero_based=voc_zero_based,
                     val_fraction=val_fraction, split_by=split_by, seed=seed)
    if host not in LOOPBACK:
        typer.echo(f"warning: listening on {host}: other machines can reach the studio (they need its token)", err=True)
    sock = bind(host, port)
    token = secrets.token_urlsafe(24)
    port = sock.getsockname()[1]
    url = f"http://{url_host(host if host not in EVERY_ADDRESS else '127.0.0.1')}:{port}/?token={token}"
    typer.echo(f"augpipe studio: {session.source} ({session.kind.name}, {len(session.candidates()):,} images outside "
               "validation and test folders)")
    typer.echo(f"open {url}")
    if host in EVERY_ADDRESS:
        import socket

        typer.echo(f"from other machines: http://{socket.gethostname()}:{port}/?token={token} (or this machine's "
                   "address in place of its name)")
    typer.echo("Ctrl-C stops it", err=True)
    session.warm()
    if not no_browser:
        webbrowser.open(url)
    try:
        serve(session, sock, token, host)
    except (KeyboardInterrupt, Terminated):  # uvicorn stops, then passes the signal on
        pass
    typer.echo("augpipe studio stopped")
    if _state.get("own_process"):  # a tile still being made (a transform cannot be stopped) is not waited for
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _need_studio() -> None:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "ruamel.yaml") if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        raise UsageError(f"augpipe studio needs {' and '.join(missing)}: pip install 'augpipe[studio]'")


def main(argv: list[str] | None = None) -> None:
    _state["own_process"] = True  # this process is augpipe's from its start (not a test's CliRunner)
    # OpenBLAS's idle threads spin, taking time from the workers; augpipe does no linear algebra
    # worth a thread (the trainer's torch has its own). Before numpy loads: cli imports no numpy.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # torch's OpenMP threads spin while they wait: beside another busy process on 2 cores a small
    # model's training step took 0.48-0.75 s against 0.045-0.05 waiting passively (in 3 tries of 5;
    # 0.05-0.07 against 0.05 in the others), and passively costs nothing measurable on a quiet
    # machine (18-23 ms against 25). Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    previous = signals.install()  # one Ctrl-C is enough; further ones while the run cleans up are ignored
    try:
        code = _run(argv)
    finally:
        if argv is not None:  # a program that calls main itself gets its own handlers back
            signals.restore(previous)
    _exit(code, argv is None)


def _run(argv: list[str] | None) -> int:
    """The command's exit code; every failure one line."""
    try:
        code = app(args=argv, prog_name="augpipe", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: one line, as every other error
        if not exc.format_message().strip():  # bare `augpipe`: the help has printed itself, no error line
            sys.exit(exc.exit_code)
        command = f" {exc.ctx.command_path.split(' ', 1)[1]}" if getattr(exc, "ctx", None) and " " in (
            exc.ctx.command_path or "") else ""
        typer.echo(f"augpipe: error: {exc.format_message()} (see augpipe{command} --help)", err=True)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt, Terminated) as exc:  # before a command ran: its parsing
        signals.handled()
        terminated = isinstance(exc, Terminated)
        typer.echo(f"augpipe: error: {'terminated' if terminated else 'interrupted'}", err=True)
        return 143 if terminated else 130
    return code if isinstance(code, int) else 0


def _exit(code: int, command_line: bool = False) -> None:
    """Exit with `code`. The command line's own call (`main()`, the `augpipe` script's and
    `python -m augpipe`'s) leaves without the interpreter's teardown once nothing is left to
    finish: its freeing of every module took 0.1 s of a short run. After the exit handlers
    (multiprocessing's, logging's), where no thread but daemons is left; else Python's own exit,
    as for a program that calls `main(argv)` itself. After a run on Ray, without the handlers
    too, whoever called: Ray's threads can crash the teardown once the run is over and cleaned up
    (a SIGSEGV after a SIGTERM, seen with Ray 2.60)."""
    import threading

    if "ray" not in sys.modules:
        if not command_line or any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
            sys.exit(code)  # a caller of its own, or a thread still working (an executor's): Python's exit
        import atexit

        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with the descriptor closed
                stream.flush()
        except (OSError, ValueError):  # a reader that left, a closed stream: nothing more to say
            pass
    os._exit(code)
