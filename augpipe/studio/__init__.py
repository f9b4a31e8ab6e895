"""The studio: a recipe designed live on a source's own images.

`Studio` is one session over one source, without the web: `prepare` validates a recipe and
chooses the images, its `Job` makes each tile with the per-sample function `expand` uses (the
tile is the row `expand` writes for that source, copy and seed), `edit` and `save` change the
recipe's text and file. `augpipe.studio.server` serves it to the page.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from augpipe.errors import RecipeError, SkipInput, SourceError, UsageError

TILE = 320  # the page's tiles: a drawn tile fits in TILE × TILE
MAX_ROWS, MAX_COPIES = 8, 8
MAX_SOURCES = 64  # sources kept decoded
MAX_TILES = 512  # tiles kept encoded (the page asks for them after the event that names them)
SOURCE_BYTES, TILE_BYTES = 1 << 30, 512 << 20  # the most the decoded sources and the tiles hold
MAX_FILES = 50  # file names a search returns


class Stale(Exception):
    """A tile of a render a newer one has replaced: it is not made."""


@dataclass(frozen=True)
class Pick:
    """Which source images: `random` (drawn across classes with `seed`), one `class`, or `files`."""

    mode: str = "random"
    seed: int = 0
    cls: str | None = None
    files: tuple[str, ...] = ()


class _Recent(OrderedDict):
    """A mapping that keeps the most recently set items: at most `limit` of them, and at most
    `budget` bytes by `weigh(value)`."""

    def __init__(self, limit: int, budget: int = 0, weigh=None):
        super().__init__()
        self.limit, self.budget, self.weigh, self.used = limit, budget, weigh, 0
        self.lock = threading.RLock()  # the tiles' threads share it

    def __setitem__(self, key, value):
        with self.lock:
            if key in self:
                self.pop(key)
            super().__setitem__(key, value)
            self.used += self._weight(value)
            while len(self) > 1 and (len(self) > self.limit or (self.budget and self.used > self.budget)):
                self.popitem(last=False)

    def get(self, key, default=None):
        with self.lock:
            return super().get(key, default)

    def pop(self, key, *default):
        with self.lock:
            if key in self:
                self.used -= self._weight(self[key])
            return super().pop(key, *default)

    def popitem(self, last: bool = True):
        with self.lock:
            key, value = super().popitem(last)
            self.used -= self._weight(value)
            return key, value

    def _weight(self, value) -> int:
        return self.weigh(value) if self.weigh else 0


def _pixels_held(value) -> int:
    """A kept source's decoded bytes (its image; masks are small beside it)."""
    loaded = getattr(value, "loaded", None)
    return loaded.decoded.rgb.nbytes if loaded is not None else 0


@dataclass
class Tiles:
    """Encoded tiles by key, the most recent kept: (bytes, media type)."""

    items: _Recent = field(default_factory=lambda: _Recent(MAX_TILES * 3, TILE_BYTES, lambda v: len(v[0])))

    def put(self, key: str, data: bytes, media: str) -> str:
        self.items[key] = (data, media)
        return key

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self.items.get(key)


class _Pool:
    """The tiles' threads, counting those at work: a render that finds them busy with a stale
    render's tiles (a transform cannot be stopped half-way) gets threads of its own."""

    def __init__(self, workers: int):
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="studio-tile")
        self.busy = 0
        self.lock = threading.Lock()

    def run(self, func, *args):
        with self.lock:
            self.busy += 1
        try:
            return func(*args)
        finally:
            with self.lock:
                self.busy -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Studio:
    """One source, one recipe file (or none yet), and what is kept between edits: the decoded
    sources, the donors, the tiles already made, the dry runs already run."""

    def __init__(self, source: str, recipe: str | None = None, *, format: str = "auto", layout: str = "auto",
                 voc_zero_based: bool = False, val_fraction: float = 0.1, split_by: str = "content",
                 max_pixels: int | None = None, seed: int = 0, workdir: str | Path | None = None,
                 workers: int | None = None):
        from functools import partial

        from augpipe.formats import scan
        from augpipe.options import DEFAULT_MAX_PIXELS, ExpandOptions
        from augpipe.recipe import import_albumentations
        from augpipe.sample import DonorReader
        from augpipe.store import normalise_location, open_store, read_source
        from augpipe.targets import for_scan

        import_albumentations()  # here, before the threads that use it
        self.source = normalise_location(source)
        self.flags = {"format": format, "layout": layout, "voc_zero_based": voc_zero_based,
                      "val_fraction": val_fraction, "split_by": split_by}
        self.found = scan(self.source, layout, format, voc_zero_based)
        self.kind = for_scan(self.found)
        self.store = open_store(self.source)
        self.options = ExpandOptions(progress=False, val_fraction=val_fraction, split_by=split_by,
                                     max_pixels=max_pixels or DEFAULT_MAX_PIXELS, workers=1)
        self.seed = seed
        self.workdir = Path(workdir or os.getcwd()).resolve()
        self.recipe_path, self.bundled, self.text = _starting_recipe(recipe, self.kind)
        self.saved_text = self.text if self.recipe_path and self.recipe_path.exists() and not self.bundled else None
        self.saved = {self.recipe_path} if self.recipe_path and not self.bundled else set()  # may be saved over
        self.loaded = _Recent(MAX_SOURCES, SOURCE_BYTES, _pixels_held)
        self.donors = DonorReader(partial(read_source, self.store), self.kind, self.options.max_pixels)
        self.tiles = Tiles()
        self.made = _Recent(MAX_TILES)  # (recipe sha, seed, source, copy) -> a tile event
        self.checks = _Recent(64)  # (recipe sha, sizes) -> the dry run's event
        self.generation = 0
        self.workers = workers or _cores()
        self.pool = _Pool(self.workers)
        self._hashes: dict | None | bool = False  # False: not read yet
        self._plans = _Recent(8)
        self._lock = threading.Lock()
        self._candidates = None
        self._files = {f.relpath: f for f in self.found.files}

    def warm(self) -> None:
        """In the background: the starting recipe's first tiles, so that albumentations is loaded,
        a few sources decoded and the composes built before the page asks."""
        def run():
            try:
                job = self.prepare(self.text, self.seed, newest=False)
                for row, copy in job.tasks[:4]:
                    job.tile(row, copy)
                job.check()
                self.edit(self.text, "unset", path=[0], param="p")  # ruamel's first use is slow
            except Exception:  # noqa: BLE001 - the page will say what is wrong with the recipe
                pass

        threading.Thread(target=run, name="studio-warm", daemon=True).start()

    def close(self) -> None:
        self.generation += 1
        self.pool.close()

    # ------------------------------------------------------------ what the page starts from

    def state(self) -> dict:
        return {"source": self.source, "kind": self.kind.name, "classes": list(self.found.classes),
                "files": len(self.candidates()),
                "recipe": {"path": self._shown(self.recipe_path), "text": self.text, "bundled": self.bundled},
                "seed": self.seed, "pick_seed": 0, "rows": 4, "copies": 3, "tile": TILE, "cwd": str(self.workdir),
                "skipped": len(self.found.skipped)}

    def candidates(self) -> dict[str, str | None]:
        """The images expand may augment (those a source's split folders do not put elsewhere),
        each with the class it shows: its own, or the rarest of its objects' classes."""
        if self._candidates is None:
            from augpipe.preview import _training_by_class

            by_class = _training_by_class(self.found, None, self.kind)
            self._candidates = {rel: c for c, rels in by_class.items() for rel in sorted(rels)}
        return self._candidates

    def label(self, rel: str) -> str | None:
        """An image's class, or the classes of its objects."""
        f = self._files.get(rel)
        if f is None or f.class_name is not None:
            return f.class_name if f is not None else None
        held = self.kind.held(f, self.found.classes)
        return ", ".join(sorted(held)) or self.candidates().get(rel)

    def files(self, query: str = "", cls: str | None = None) -> list[str]:
        query = query.lower()
        return [rel for rel, c in self.candidates().items()
                if query in rel.lower() and (not cls or c == cls)][:MAX_FILES]

    # ------------------------------------------------------------ a render

    def prepare(self, text: str, seed: int = 0, copies: int = 3, rows: int = 4, pick: Pick = Pick(),
                newest: bool = True) -> Job:
        """The recipe validated (RecipeError, with `check`'s words) and the images chosen, as a
        job whose tiles are made on the studio's threads. A newer job makes this one stale
        (unless it is not the `newest`: the warm-up's)."""
        from augpipe.preview import RowMaker
        from augpipe.recipe import check_for_kind, has_mixes, parse_recipe

        with self._lock:
            self.generation += newest
            generation = self.generation if newest else None
            if newest and self.pool.busy:  # stale tiles still running: leave them their threads
                self.pool.close()
                self.pool = _Pool(self.workers)
            pool = self.pool
        started = time.perf_counter()
        recipe = parse_recipe(text, self._where())
        warnings = [*recipe.warnings, *check_for_kind(recipe, self.kind)]
        copies = max(0, min(int(copies), MAX_COPIES, recipe.copies))
        rows = max(1, min(int(rows), MAX_ROWS))
        planned = self._planned(recipe, seed) if has_mixes(recipe) and recipe.copies else None
        maker = RowMaker(self.found, self.store, recipe, self.kind, copies, seed, self.options, planned,
                         self.donors, self.loaded)
        chosen, skipped = self._choose(maker, pick, rows, planned)
        return Job(self, generation, recipe, seed, copies, maker, chosen, skipped, warnings, started, pool)

    def _choose(self, maker, pick: Pick, rows: int, planned: dict | None) -> tuple[list[str], list]:
        """(the sources to show, [(source, reason)] for those that cannot be shown)."""
        from augpipe.preview import _class_queues, _round_robin

        skipped: list = []

        def usable(rel: str) -> str | None:
            try:
                ok = planned is not None or maker.source(rel) is not None
            except SkipInput as exc:
                skipped.append((rel, exc.reason))
                return None
            if not ok and pick.mode == "files":
                skipped.append((rel, "held out for validation: expand never augments it"))
            return rel if ok else None

        pool = {rel: c for rel, c in self.candidates().items() if planned is None or rel in planned}
        if pick.mode == "files":
            order = [f for f in pick.files if f]
            unknown = [f for f in order if f not in self.candidates()]
            if unknown:
                raise UsageError(f"{unknown[0]}: not a training image of {self.source}")
            chosen = []
            for rel in order:
                if len(chosen) == rows:
                    break
                if usable(rel) is not None:
                    chosen.append(rel)
        else:
            if pick.mode == "class":
                pool = {rel: c for rel, c in pool.items() if c == pick.cls}
                if not pool:
                    raise UsageError(f"no training images of class {pick.cls!r}")
            by_class: dict = {}
            for rel, c in pool.items():
                by_class.setdefault(c, []).append(rel)
            chosen = _round_robin(_class_queues(by_class, pick.seed), rows, usable)
        if not chosen and not skipped:
            raise SourceError(f"no training images to show in {self.source}")
        return chosen, skipped

    def _planned(self, recipe, seed: int) -> dict:
        """The training split as expand plans it for a recipe with multi-image steps (the donors
        drawn as its plan draws them): sources hashed once a session, when split by content."""
        from augpipe.preview import content_hashes, planned_training

        if self._hashes is False:
            self._hashes = content_hashes(self.source, self.found, recipe, self.kind, self.options)
            self._candidates = None
        key = (recipe.sha256, seed)
        if key not in self._plans:
            self._plans[key] = planned_training(self.found, recipe, recipe.copies, seed, self.options, self._hashes)
        return self._plans[key]

    def check(self, recipe, sizes: tuple) -> dict:
        """The dry run (`augpipe check`'s): {"warnings": [...], "error": ... or None}, each with its line."""
        from augpipe.dryrun import check_recipe

        key = (recipe.sha256, sizes)
        if key not in self.checks:
            try:
                found = check_recipe(recipe, sizes or None, self.kind)
                event = {"type": "check", "warnings": [self.located(w, recipe.text) for w in found.warnings],
                         "error": None}
            except RecipeError as exc:
                event = {"type": "check", "warnings": [], "error": self.located(str(exc), recipe.text)}
            self.checks[key] = event
        return self.checks[key]

    def located(self, message: str, text: str) -> dict:
        from augpipe.studio.yamltext import error_line

        return {"line": error_line(text, message), "message": message}

    # ------------------------------------------------------------ the recipe's text and file

    def edit(self, text: str, op: str, **how) -> str:
        from augpipe.studio.yamltext import edit

        return edit(text, op, **how)

    def save(self, text: str, path: str | None = None) -> dict:
        """The recipe written where the studio was started from, or to a new file inside the
        working folder: atomically, the previous version kept as NAME.bak (both renamed into
        place: a link there is replaced, never followed). Only a recipe that validates, for this
        dataset, is written."""
        from augpipe.recipe import check_for_kind, parse_recipe

        target = self._save_path(path)
        check_for_kind(parse_recipe(text, self._shown(target)), self.kind)
        backup = None
        if target.exists():
            backup = target.with_name(target.name + ".bak")
            _write_atomically(backup, target.read_bytes())
        _write_atomically(target, text.encode("utf-8"))
        self.recipe_path, self.bundled, self.text, self.saved_text = target, False, text, text
        self.saved.add(target)
        return {"saved": self._shown(target), "backup": self._shown(backup) if backup else None,
                "command": self.command(), "notes": self.command_notes()}

    def _save_path(self, path) -> Path:
        if not path:
            if self.recipe_path is None or self.bundled:
                what = "a bundled recipe" if self.bundled else "no recipe file"
                raise UsageError(f"the studio was started with {what}: type a new file name to save to")
            return self.recipe_path
        if not isinstance(path, str) or "\0" in path:
            raise UsageError("the file name to save to is a text without NUL characters")
        given = Path(path)
        if not given.suffix:
            given = given.with_name(given.name + ".yaml")
        target = (self.workdir / given).resolve() if not given.is_absolute() else given.resolve()
        if self.workdir not in target.parents:
            raise UsageError(f"{path}: save inside the working folder {self.workdir}")
        if target.suffix.lower() not in (".yaml", ".yml"):
            raise UsageError(f"{path}: a recipe file ends in .yaml or .yml")
        if target in self.saved:
            return target
        if os.path.lexists(target):
            raise UsageError(f"{path} exists and is not a recipe this studio started from or saved: "
                             "choose a new name")
        if not target.parent.is_dir():
            raise UsageError(f"{path}: no folder {self._shown(target.parent)}")
        return target

    def command_notes(self) -> list[str]:
        """What to know before running the command: an earlier run in its output folder."""
        from augpipe.pipeline import default_out
        from augpipe.store import is_uri

        out = default_out(self.source)
        if is_uri(out) or not os.path.lexists(out):
            return []
        return [f"{self._shown(Path(out))} exists: expand resumes a run of the same recipe and seed there; "
                "add --overwrite to replace an earlier one, or --out for another folder"]

    def command(self, seed: int | None = None) -> str:
        """The `augpipe expand` command for the recipe file, as the studio reads the source."""
        if self.bundled:
            recipe = self.recipe_path.stem if self.recipe_path else "RECIPE.yaml"
        else:
            recipe = self._shown(self.recipe_path)
        words = ["augpipe", "expand", self.source, "--recipe", recipe]
        seed = self.seed if seed is None else seed
        if seed:
            words += ["--seed", str(seed)]
        defaults = {"format": "auto", "layout": "auto", "val_fraction": 0.1, "split_by": "content"}
        for key, default in defaults.items():
            if self.flags[key] != default:
                words += [f"--{key.replace('_', '-')}", str(self.flags[key])]
        if self.flags["voc_zero_based"]:
            words.append("--voc-zero-based")
        return shlex.join(words)

    def _where(self) -> str:
        return self._shown(self.recipe_path) if self.recipe_path else "recipe"

    def _shown(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return str(Path(path).relative_to(self.workdir))
        except ValueError:
            return str(path)


@dataclass
class Job:
    """One render: the tiles to make, (row, copy) each, and what the page is told first."""

    studio: Studio
    generation: int
    recipe: object
    seed: int
    copies: int
    maker: object
    chosen: list[str]
    skipped: list[tuple[str, str]]
    warnings: list[str]
    started: float
    pool: _Pool | None = None

    @property
    def tasks(self) -> list[tuple[int, int]]:
        return [(row, copy) for row in range(len(self.chosen)) for copy in range(self.copies + 1)]

    def start(self) -> dict:
        studio, recipe = self.studio, self.recipe
        rows = [{"source": rel, "class": studio.label(rel)} for rel in self.chosen]
        rows += [{"source": rel, "class": studio.label(rel), "skipped": reason} for rel, reason in self.skipped]
        notes = [*recipe.notes, *studio.command_notes()]
        if recipe.copies > self.copies:
            notes.append(f"showing copies 1 to {self.copies} of the {recipe.copies} expand makes of each image")
        if not recipe.keep_original:
            notes.append("keep_original is false: expand does not write the originals (shown for comparison)")
        return {"type": "start", "render": self.generation, "seed": self.seed, "rows": rows,
                "copies": list(range(self.copies + 1)), "notes": notes,
                "warnings": [studio.located(w, recipe.text) for w in self.warnings],
                "command": studio.command(self.seed), "unsaved": recipe.text != studio.saved_text}

    def stale(self) -> bool:
        return self.generation is not None and self.studio.generation != self.generation

    def tile(self, row: int, copy: int) -> dict:
        """Make one tile (Stale when a newer render has replaced this one)."""
        if self.stale():
            raise Stale
        rel = self.chosen[row]
        key = (self.recipe.sha256, self.seed, rel, copy)
        made = self.studio.made.get(key)
        if made is None or self.studio.tiles.get(made["raw"].split("/")[-2] + "-raw") is None:
            made = self._made(rel, copy)
            if "failed" not in made:
                self.studio.made[key] = made
        return {**made, "row": row}

    def _made(self, rel: str, copy: int) -> dict:
        started = time.perf_counter()
        try:
            made = self.maker.row(rel, (copy,))
        except SkipInput as exc:
            return {"type": "tile", "copy": copy, "source": rel, "failed": exc.reason}
        except Exception as exc:  # noqa: BLE001 - one tile's failure, said on it
            return {"type": "tile", "copy": copy, "source": rel,
                    "failed": f"unexpected error: {type(exc).__name__}: {str(exc)[:200]}"}
        if made is None:
            return {"type": "tile", "copy": copy, "source": rel, "failed": "held out for validation"}
        row, failed = made
        if not row.tiles:
            return {"type": "tile", "copy": copy, "source": rel,
                    "failed": failed[0][1] if failed else "no row made"}
        return _tile_event(self.studio.tiles, row.tiles[0], rel, started)

    def check(self) -> dict:
        sizes = tuple(sorted({(int(s.loaded.decoded.rgb.shape[1]), int(s.loaded.decoded.rgb.shape[0]))
                              for rel in self.chosen
                              if (s := self.studio.loaded.get(rel)) is not None and not isinstance(s, Exception)}))
        return self.studio.check(self.recipe, sizes)

    def run(self) -> list[dict]:
        """Every event of the render in order, on this thread (the library's way; the server
        streams them as the threads finish)."""
        events = [self.start(), *(self.tile(r, c) for r, c in self.tasks), self.check()]
        return [*events, {"type": "done", "ms": round((time.perf_counter() - self.started) * 1000, 1)}]


def _tile_event(tiles: Tiles, tile, rel: str, started: float) -> dict:
    """A made tile's event; its drawn picture and its raw bytes kept to be served by key."""
    key = hashlib.sha256(f"{rel}\0{tile.copy}\0{random.random()}".encode()).hexdigest()[:20]
    donors = []
    for k, d in enumerate(tile.donors):
        src = tiles.put(f"{key}-d{k}", _jpeg(d.rgb), "image/jpeg") if d.rgb is not None else None
        donors.append({"step": d.step, "source": d.source, "transforms": d.transforms,
                       "src": f"/api/tile/{src}" if src else None})
    tiles.put(key, _jpeg(tile.rgb), "image/jpeg")
    tiles.put(f"{key}-raw", tile.data, _media(tile.path))
    h, w = tile.rgb.shape[:2]
    return {"type": "tile", "copy": tile.copy, "source": rel, "src": f"/api/tile/{key}",
            "raw": f"/api/tile/{key}/raw", "caption": tile.caption, "applied": tile.applied, "donors": donors,
            "width": int(w), "height": int(h), "ms": round((time.perf_counter() - started) * 1000, 1)}


def _jpeg(rgb, size: int = TILE) -> bytes:
    """The picture scaled to fit size × size (small images stay crisp), as JPEG."""
    import cv2

    from augpipe.preview import scaled

    if max(rgb.shape[:2]) != size:
        rgb = scaled(rgb, size)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def _write_atomically(path: Path, data: bytes) -> None:
    """Written beside `path` under a new name, then renamed onto it."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _media(path: str) -> str:
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _starting_recipe(ref: str | None, kind) -> tuple[Path | None, bool, str]:
    """(the recipe's file, whether it is a bundled one, its text). Without one: the bundled
    recipe for the kind of dataset, to start from (saved under a new name)."""
    from augpipe.recipe import bundled_dir, resolve_recipe_path

    starter = (bundled_dir() / ("detection.yaml" if kind.spatial else "classic.yaml")).read_text(encoding="utf-8")
    if ref is None:
        return None, True, starter
    given = Path(ref)
    try:
        path = resolve_recipe_path(ref)
    except RecipeError:
        if os.path.lexists(given) or given.suffix.lower() not in (".yaml", ".yml"):
            raise
        if not given.parent.is_dir():
            raise UsageError(f"--recipe {ref}: no folder {given.parent} to make it in") from None
        return given.resolve(), False, starter  # a new recipe file, written on the first save
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from None
    bundled = path.resolve().parent == bundled_dir().resolve()
    return path.resolve(), bundled, text


def _cores() -> int:
    from augpipe.engines.local import default_workers

    return max(2, default_workers())
