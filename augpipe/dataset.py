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

    def iter_batches(self, split: str, columns: list[str] | None = None):
        """One split's rows as Arrow record batches, a row group at a time, shard by shard in the
        manifest's order: the one way rows are read. A shard that cannot be read is one line."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [s["name"] for s in self.shards(split)]
        fs, paths = self.store.arrow(names)
        for name, path in zip(names, paths):
            try:
                with fs.open_input_file(path) as fh:
                    reader = pq.ParquetFile(fh)
                    for g in range(reader.metadata.num_row_groups):
                        yield from reader.read_row_group(g, columns=columns).to_batches()
            except FileNotFoundError:
                raise SourceError(f"{self.location}: shard {name} is missing: augpipe inspect --verify lists the "
                                  "damage") from None
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(f"{self.location}: shard {name} cannot be read ({str(exc).splitlines()[0][:120]}): "
                                  "augpipe inspect --verify lists the damage") from None

    def read(self, split: str, columns: list[str] | None = None, filters=None):
        """One split's rows as a table, or one line naming the shard that cannot be read."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [s["name"] for s in self.shards(split)]
        if not names:
            return None
        fs, paths = self.store.arrow(names)
        try:
            return pq.ParquetDataset(paths, filesystem=fs, filters=filters).read(columns=columns)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.location}: a shard is missing ({exc}): augpipe inspect --verify lists the damage") from None
        except (OSError, pa.ArrowException) as exc:  # a truncated or corrupt shard
            raise SourceError(f"{self.location}: a {split} shard cannot be read ({str(exc).splitlines()[0][:120]}): "
                              "augpipe inspect --verify lists the damage") from None


def is_dataset(location) -> bool:
    return has_manifest(open_store(location))


def open_dataset(location) -> Dataset:
    """The dataset at a path or URI, or one line saying why it is not one."""
    store = open_store(location)
    return Dataset(store, Manifest.load(store))
