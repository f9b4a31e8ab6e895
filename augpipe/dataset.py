"""An expanded dataset as its readers see it: the manifest and the shards it lists, on a local
disk or an object store. The one place that finds a dataset's shards."""

from __future__ import annotations

from dataclasses import dataclass

from augpipe.errors import SourceError
from augpipe.layout import SPLITS
from augpipe.manifest import Manifest, has_manifest
from augpipe.store import open_store


@dataclass
class Dataset:
    store: object
    manifest: Manifest

    @property
    def location(self) -> str:
        return self.store.display()

    @property
    def classes(self) -> list[str]:
        return self.manifest.classes

    @property
    def kind(self):
        """The dataset's target kind (`augpipe.targets`)."""
        return self.manifest.kind

    def splits(self) -> list[str]:
        present = {s["split"] for s in self.manifest.shards}
        return [s for s in SPLITS if s in present]

    def shards(self, split: str | None = None) -> list[dict]:
        return [s for s in self.manifest.shards if split is None or s["split"] == split]

    def open(self, name: str):
        return self.store.open_input(name)

    def schema(self, split: str):
        """The Arrow schema of a split's rows, from its first shard's footer."""
        return next(self._shard_readers(split, [0]))[1].schema_arrow

    def iter_batches(self, split: str, columns: list[str] | None = None, pieces: list[tuple] | None = None,
                     where: tuple[str, list] | None = None):
        """One split's rows as Arrow record batches, a row group at a time, shard by shard in the
        manifest's order: the one way rows are read. A shard that cannot be read is one line.

        `columns` may name a nested field (`objects.bbox`): its column is then that field, named
        by its last part. `pieces`: (shard index in the split, first row, end row) runs to read, in
        their order, instead of every row. `where`: (column, values): only the rows whose column
        is one of the values; a row group without one is not read past that column."""
        import pyarrow as pa

        pieces = pieces if pieces is not None else [(i, 0, None) for i in range(len(self.shards(split)))]
        for (_, lo, hi), (name, reader) in zip(pieces, self._shard_readers(split, [p[0] for p in pieces])):
            self.check_columns(name, reader.schema_arrow.names, columns or ())
            try:
                yield from _row_batches(reader, columns, lo, hi, where)
            except GeneratorExit:  # closed, maybe as the interpreter ends and empties pyarrow's module
                raise
            except (OSError, pa.ArrowException) as exc:
                raise _unreadable(self.location, name, exc) from None

    def check_columns(self, name: str, held: list[str], columns) -> None:
        """A shard lacking a column its kind's readers need (`objects.bbox`: `objects`) is one line."""
        missing = [c for c in columns if c.split(".")[0] not in held]
        if missing:
            raise SourceError(f"{self.location}: shard {name} has no {missing[0]!r} column, which its manifest's "
                              f"{self.manifest.task} kind needs: the manifest does not match its shards")

    def _shard_readers(self, split: str, indices: list[int]):
        """(name, an open ParquetFile) of each shard of the split at these indices, one open at a time."""
        import pyarrow as pa

        names = [s["name"] for s in self.shards(split)]
        fs, paths = self.store.arrow([names[i] for i in indices])
        for i, path in zip(indices, paths):
            try:
                fh = fs.open_input_file(path)
            except FileNotFoundError:
                raise SourceError(f"{self.location}: shard {names[i]} is missing: augpipe inspect --verify lists "
                                  "the damage") from None
            except (OSError, pa.ArrowException) as exc:
                raise _unreadable(self.location, names[i], exc) from None
            with fh:
                try:
                    reader = parquet_file(fs, fh)
                except (OSError, pa.ArrowException) as exc:
                    raise _unreadable(self.location, names[i], exc) from None
                yield names[i], reader

    def read(self, split: str, columns: list[str] | None = None):
        """One split's rows as one table (`iter_batches`'), or None when there is no such split."""
        import pyarrow as pa

        if not self.shards(split):
            return None
        batches = list(self.iter_batches(split, columns))
        if batches:
            return pa.Table.from_batches(batches)
        readers = self._shard_readers(split, [0])  # no rows: their columns (kept: it holds the file open)
        return _leaves(next(readers)[1].read(columns=columns), columns)


def _unreadable(location: str, name: str, exc: BaseException) -> SourceError:
    """One line naming the shard; `reason`: the cause alone (`inspect --verify` names the shard itself)."""
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    error = SourceError(f"{location}: shard {name} cannot be read ({reason}): augpipe inspect --verify lists the damage")
    error.reason = reason
    return error


def parquet_file(fs, fh):
    """A ParquetFile on a file `fs` opened, read as suits where it lies (`read_group`): from a
    remote store, a row group's column chunks fetched ahead together (`pre_buffer`: one round
    trip) by Arrow's threads; from a local file, each read when it is needed, in the calling
    thread (the ranges' copy and the threads cost a stream's cold row group 1.3-1.7× its read)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    remote = not isinstance(fs, pafs.LocalFileSystem)
    reader = pq.ParquetFile(fh, pre_buffer=remote)
    reader.augpipe_threads = remote
    return reader


def read_group(reader, g: int, columns: list[str] | None):
    """Row group `g` of a `parquet_file` (any other ParquetFile: by Arrow's default, threads)."""
    return reader.read_row_group(g, columns=columns, use_threads=getattr(reader, "augpipe_threads", True))


def _row_batches(reader, columns: list[str] | None, lo: int, hi: int | None, where: tuple[str, list] | None):
    """A shard's rows lo..hi (hi None: to its end) as record batches, a row group at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    start = 0
    for g in range(reader.metadata.num_row_groups):
        n = reader.metadata.row_group(g).num_rows
        a, b = max(lo - start, 0), n if hi is None else min(hi - start, n)
        start += n
        if a >= b:
            continue
        keep = None
        if where is not None:
            key = read_group(reader, g, [where[0]]).column(0).slice(a, b - a)
            keep = pc.is_in(key, value_set=pa.array(where[1], key.type))
            if not pc.any(keep).as_py():
                continue
        table = read_group(reader, g, columns)
        table = table.slice(a, b - a) if (a, b) != (0, n) else table
        yield from _leaves(table if keep is None else table.filter(keep), columns).to_batches()


def _leaves(table, columns: list[str] | None):
    """The table with each nested column asked for (`objects.bbox`) as that field, named `bbox`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not columns or not any("." in c for c in columns):
        return table
    picked = {}
    for c in columns:
        top, *path = c.split(".")
        picked[path[-1] if path else top] = pc.struct_field(table.column(top), path) if path else table.column(top)
    return pa.table(picked)


def changed_shards(store, shards: list[dict]) -> list[str]:
    """The shards whose bytes are not those the manifest records: gone, another size, or on a
    local disk another sha256 (a bucket's are not read whole for it: `augpipe inspect --verify` does)."""
    from concurrent.futures import ThreadPoolExecutor

    from augpipe.store.local import LocalStore

    changed = [s["name"] for s in shards if store.size(s["name"]) != s["bytes"]]
    if isinstance(store, LocalStore):
        rest = [s for s in shards if s["name"] not in changed]
        with ThreadPoolExecutor(8) as pool:
            changed += [s["name"] for s, digest in zip(rest, pool.map(lambda s: store.sha256(s["name"]), rest))
                        if digest != s["sha256"]]
    return changed


def is_dataset(location) -> bool:
    return has_manifest(open_store(location))


def open_dataset(location) -> Dataset:
    """The dataset at a path or URI, or one line saying why it is not one."""
    store = open_store(location)
    return Dataset(store, Manifest.load(store))
