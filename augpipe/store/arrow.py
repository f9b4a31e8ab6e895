"""A prefix on any pyarrow filesystem (S3, GCS, HDFS): `pyarrow.fs.FileSystem.from_uri`'s."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from augpipe.errors import StoreError
from augpipe.store.base import LIST_THREADS, PREFETCH, Entry, hidden, read_ahead, stream_sha256


class ArrowStore:
    """A prefix on any pyarrow filesystem (see `augpipe.store.base.Store` for the contract)."""

    def __init__(self, fs, root: str, uri: str):
        self.fs, self.root, self.uri = fs, root, uri

    def __getstate__(self):
        # pyarrow filesystems pickle (S3 with its options); kept explicit for Ray and the pool
        return {"fs": self.fs, "root": self.root, "uri": self.uri}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def full(self, name: str = "") -> str:
        return f"{self.root}/{name}" if name else self.root

    def display(self, name: str = "") -> str:
        return f"{self.uri}/{name}" if name else self.uri

    def canonical(self) -> str:
        return self.uri

    def not_a_folder(self) -> str | None:
        return None  # a prefix is a folder as soon as something is written under it

    def check(self) -> None:
        """The bucket is there and ours to read, or one line saying what is wrong, before any work."""
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise StoreError(f"{self.uri}: {_cause(exc)}") from None
        if info.type == pafs.FileType.NotFound:
            raise StoreError(f"{self.uri}: no such bucket '{bucket}'")

    def _info(self, name: str = ""):
        try:
            return self.fs.get_file_info(self.full(name))
        except OSError as exc:
            raise StoreError(f"{self.display(name)}: {_cause(exc)}") from None

    def exists(self, name: str = "") -> bool:
        import pyarrow.fs as pafs

        return self._info(name).type != pafs.FileType.NotFound

    def is_dir(self, name: str = "") -> bool:
        import pyarrow.fs as pafs

        return self._info(name).type == pafs.FileType.Directory

    def is_file(self, name: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(name).type == pafs.FileType.File

    def size(self, name: str) -> int | None:
        import pyarrow.fs as pafs

        info = self._info(name)
        return info.size if info.type == pafs.FileType.File else None

    def names(self, prefix: str = "") -> list[str]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.full(prefix), allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StoreError(f"{self.display(prefix)}: {_cause(exc)}") from None
        return sorted(i.base_name for i in infos)

    def list_files(self, prefix: str = "") -> list[Entry]:
        """Every object below prefix; each top-level folder listed in its own thread."""
        import pyarrow.fs as pafs

        base = self.full(prefix)
        try:
            top = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"{self.display(prefix)}: {_cause(exc)}") from None
        files = [i for i in top if i.type == pafs.FileType.File]
        folders = [i.path for i in top if i.type == pafs.FileType.Directory]

        def below(path: str):
            return self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))

        with ThreadPoolExecutor(min(LIST_THREADS, max(len(folders), 1))) as pool:
            for infos in pool.map(below, folders):
                files += [i for i in infos if i.type == pafs.FileType.File]
        cut = len(self.root) + 1
        entries = (_object_entry(i.path[cut:], i.size or 0, i.mtime_ns or 0) for i in files)
        return sorted((e for e in entries if not hidden(e.name)), key=lambda e: e.name)

    def read_bytes(self, name: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.full(name)) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "nosuchkey" in str(exc).lower().replace(" ", ""):
                raise FileNotFoundError(self.display(name)) from None
            raise

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def read_many(self, names: list[str], read: Callable[[str], Any] | None = None,
                  ahead: int = PREFETCH) -> Iterator[tuple[str, Any]]:
        """`ahead` reads in flight while the caller works on those already read."""
        return read_ahead(names, read or self.read_bytes, ahead)

    def sha256(self, name: str) -> str | None:
        return stream_sha256(lambda: self.fs.open_input_stream(self.full(name)))

    def in_memory(self, names: list[str]) -> bool:
        return False  # every read is a round trip

    def write_bytes(self, name: str, data: bytes, sync: bool = True) -> None:
        """One PUT of bytes already in memory (nothing can fail half-way through our side)."""
        stream = self.fs.open_output_stream(self.full(name))
        stream.write(data)
        stream.close()

    def temp_dir(self, work: str) -> Path:
        """A worker-local folder: shards are finished on local disk, then uploaded whole. Removed
        when the process ends; those of processes killed before they could are removed by the
        next one to make its own."""
        folder = Path(tempfile.gettempdir()) / f"augpipe-{os.getpid()}"
        if not folder.is_dir():
            _sweep_temp_dirs()
            folder.mkdir(exist_ok=True)
            import atexit
            import shutil
            from multiprocessing import util

            atexit.register(shutil.rmtree, folder, True)
            # a pool worker leaves by os._exit, past atexit: multiprocessing's own exit hooks run
            util.Finalize(None, shutil.rmtree, (folder, True), exitpriority=0)
        return folder

    def publish(self, local_file: Path, name: str) -> None:
        """Upload a finished file to its final key, then check the object's size: never stream a
        Parquet writer to an object store (a failure would publish the partial object)."""
        size = local_file.stat().st_size
        with open(local_file, "rb") as src:
            stream = self.fs.open_output_stream(self.full(name))
            stream.upload(src)
            stream.close()
        local_file.unlink(missing_ok=True)
        if self.size(name) != size:
            raise OSError(f"upload of {self.display(name)} did not complete ({size} bytes expected)")

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(self.full(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "not found" not in str(exc).lower():
                raise

    def delete_tree(self, name: str) -> None:
        try:
            self.fs.delete_dir(self.full(name))
        except (FileNotFoundError, OSError):
            pass

    def makedirs(self, name: str = "") -> None:
        pass  # object stores have no folders to make

    def create_exclusive(self, name: str, data: bytes) -> bool | None:
        """S3's conditional PUT (`If-None-Match: *`, which AWS, MinIO and moto honour), through
        boto3 where it is installed: True when written, False when the object was there; None
        when this store cannot be asked (not S3, or no boto3)."""
        import pyarrow.fs as pafs

        try:
            import boto3
            from botocore.exceptions import ClientError
        except ImportError:
            return None
        if not isinstance(self.fs, pafs.S3FileSystem):
            return None
        o = self.fs.__reduce__()[1][0]  # the options pyarrow was given (or found in the environment)
        endpoint = o.get("endpoint_override") or None
        if endpoint and "://" not in endpoint:
            endpoint = f"{o.get('scheme') or 'https'}://{endpoint}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=o.get("region") or None,
                              aws_access_key_id=o.get("access_key") or None,
                              aws_secret_access_key=o.get("secret_key") or None,
                              aws_session_token=o.get("session_token") or None)
        bucket, _, key = self.full(name).partition("/")
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            return None
        return True

    def open_input(self, name: str):
        return self.fs.open_input_file(self.full(name))

    def arrow(self, names: list[str]) -> tuple[Any, list[str]]:
        return self.fs, [self.full(n) for n in names]


def _cause(exc: BaseException) -> str:
    """pyarrow's error, as one line a user can act on."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower().replace("_", " ")
    if "unrecognized filesystem type" in lowered:
        return f"unknown scheme (pyarrow reads {', '.join(_schemes())} and local paths)"
    if "invalid access key" in lowered or "signature" in lowered:
        return "the credentials were not accepted (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)"
    if "access denied" in lowered or "forbidden" in lowered:
        return "access denied (check the credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)"
    if "no such bucket" in lowered or "bucket does not exist" in lowered:
        return "no such bucket"
    if "credentials" in lowered:
        return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    return text


def _schemes() -> list[str]:
    return ["s3://", "gs://", "hdfs://", "file://"]


def _object_entry(name: str, size: int, mtime_ns: int) -> Entry:
    """A listed object; a key with an empty, '.' or '..' part (`cat/../dog/x.jpg`, `a//b.jpg`)
    exists on the store but cannot be read through a path: a recorded skip saying so."""
    if any(part in ("", ".", "..") for part in name.split("/")):
        return Entry(name, size, mtime_ns, "its key has an empty, '.' or '..' part, which cannot be read "
                                           "as a path: rename the object")
    return Entry(name, size, mtime_ns)


def _sweep_temp_dirs() -> None:
    import shutil

    from augpipe.processes import alive

    for old in Path(tempfile.gettempdir()).glob("augpipe-*"):
        pid = old.name.removeprefix("augpipe-")
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


