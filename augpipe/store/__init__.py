"""Where datasets live: a folder on this machine, or a prefix on an object store (s3://, gs://, …).

`Store.open(location)` is the one way augpipe reaches sources and outputs: local paths use the
operating system directly (atomic renames, O_NONBLOCK reads); any URI that
`pyarrow.fs.FileSystem.from_uri` understands goes through that pyarrow filesystem. Names
passed to a store are POSIX paths relative to its root.
"""

from __future__ import annotations

import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from augpipe.errors import SkipInput, StoreError

LIST_THREADS = 16  # object-store listings are latency-bound: list prefixes in parallel


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the store's root, POSIX
    size: int
    mtime_ns: int
    problem: str | None = None  # why it cannot be read (a broken link, an unreadable folder, ...)


class NotRegularFile(OSError):
    """A pipe, socket or device where a file was listed."""


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def normalise_location(location: str | os.PathLike) -> str:
    """A location as every check and every store sees it. A URI's path may not climb or hold
    empty parts: `s3://out/../other` would name bucket `out` to a check and write into `other`
    (pyarrow decodes `%2e%2e` too), so `.`, `..` and `//` inside it, encoded or not, are refused;
    a trailing `/` is dropped. Local paths are the operating system's to resolve."""
    from urllib.parse import unquote

    text = str(location)
    if not is_uri(text) or text.startswith("file://"):
        return text
    scheme, _, rest = text.partition("://")
    path, mark, query = rest.partition("?")
    parts = path.rstrip("/").split("/")
    for part in parts:
        decoded = unquote(part)
        if decoded in (".", "..") or (not decoded and len(parts) > 1) or "/" in decoded or "\\" in decoded \
                or any(ord(ch) < 32 or ord(ch) == 127 for ch in decoded):
            shown = part if part == decoded else f"{part} ({decoded})"
            raise StoreError(f"{text!r}: the part {shown!r} is refused in an object-store URI (no '.', '..', "
                             "empty, encoded '/' or control-character parts: object stores have no folders to "
                             "climb): write the path without it")
    return f"{scheme}://{'/'.join(parts)}{mark}{query}"


def open_store(location: str | os.PathLike) -> Store:
    """A store for a local path, a file:// URI or any URI pyarrow's filesystems understand."""
    text = normalise_location(location)
    if text.startswith("file://"):
        return LocalStore(Path(text[len("file://"):]))
    if not is_uri(text):
        return LocalStore(Path(text))
    import pyarrow.fs as pafs

    scheme, _, rest = text.partition("://")
    if not rest.split("?", 1)[0].strip("/"):
        raise StoreError(f"{text}: no bucket or path after {scheme}://")
    if scheme == "gs" and not _google_credentials(text):
        # without them, Google's client asks a metadata server that exists only on Google's
        # machines, and waits: say what to do instead of hanging
        raise StoreError(f"{text}: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS (or run "
                         "`gcloud auth application-default login`), or add ?anonymous=true for a public bucket")
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ValueError or OSError by scheme
        raise StoreError(f"{text}: {_cause(exc)}") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return LocalStore(Path(root))
    return ArrowStore(fs, root.rstrip("/"), text.split("?", 1)[0].rstrip("/"))


def _google_credentials(uri: str) -> bool:
    if "anonymous=true" in uri.lower() or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    if os.environ.get("GCE_METADATA_HOST") or _on_google_cloud():  # the metadata server answers there
        return True
    config = Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
    return (config / "application_default_credentials.json").is_file()


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


class Store:
    """A folder: list, read, write-and-publish, delete. Subclasses: LocalStore, ArrowStore."""

    uri: str
    local: bool

    def display(self, name: str = "") -> str:
        return f"{self.uri}/{name}" if name else self.uri


class LocalStore(Store):
    local = True

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = str(root)

    def path(self, name: str = "") -> Path:
        return self.root / name if name else self.root

    def check(self) -> None:
        pass  # a local path's problems are the caller's to name (not found, not a folder)

    def display(self, name: str = "") -> str:
        return str(self.path(name))

    def exists(self, name: str = "") -> bool:
        return os.path.lexists(self.path(name))

    def is_dir(self, name: str = "") -> bool:
        return self.path(name).is_dir()

    def is_file(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int | None:
        try:
            return self.path(name).stat().st_size
        except OSError:
            return None

    def names(self, prefix: str = "") -> list[str]:
        """Names directly in a folder (files and folders), sorted; [] when it does not exist."""
        try:
            return sorted(os.listdir(self.path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_files(self, prefix: str = "") -> list[Entry]:
        """Every non-hidden file below prefix, sorted; symlinks followed, loops cut. A linked
        folder is read after every real one: a folder or a file reached both directly and through a
        link (`cat/dogs -> ../dog`, `dog/x.png -> ../cat/x.png`) is read once, in its own place,
        and the link is a recorded skip."""
        out: list[Entry] = []
        seen: dict[tuple[int, int], str] = {}
        links: list[tuple[Path, str]] = []
        files: dict[tuple[int, int], str] = {}  # the files read in their own place
        file_links: list[tuple[os.DirEntry, str]] = []

        def visit(folder: Path, rel: str) -> None:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop, or the same folder reached twice
                if rel:
                    out.append(Entry(rel.rstrip("/"), 0, 0, f"a link to a folder read in its own place "
                                                           f"({seen[(st.st_dev, st.st_ino)] or '.'}/)"))
                return
            seen[(st.st_dev, st.st_ino)] = rel.rstrip("/")
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                child = f"{rel}{entry.name}"
                try:
                    child.encode("utf-8")
                except UnicodeEncodeError:  # bytes that are not UTF-8 (caf\xe9.jpg from another system)
                    shown = os.fsencode(child).decode("utf-8", "backslashreplace")
                    out.append(Entry(shown, 0, 0, "file name is not valid UTF-8: rename it"))
                    continue
                try:
                    if entry.is_dir():
                        if entry.is_symlink():
                            links.append((Path(entry.path), child + "/"))
                        else:
                            visit(Path(entry.path), child + "/")
                    elif entry.is_file() and entry.is_symlink():
                        file_links.append((entry, child))
                    elif entry.is_file():
                        st = entry.stat()
                        files[(st.st_dev, st.st_ino)] = child
                        out.append(Entry(child, st.st_size, st.st_mtime_ns))
                    elif entry.is_symlink():
                        out.append(Entry(child, 0, 0, "broken symlink"))
                    else:
                        out.append(Entry(child, 0, 0, "not a regular file (a pipe, socket or device)"))
                except PermissionError:
                    out.append(Entry(child, 0, 0, "cannot read: permission denied"))

        base = self.path(prefix)
        visit(base, f"{prefix.rstrip('/')}/" if prefix else "")
        while links:  # in order of their names; a link found inside a linked folder joins the queue
            links.sort(key=lambda link: link[1])
            folder, rel = links.pop(0)
            try:
                visit(folder, rel)
            except PermissionError:
                out.append(Entry(rel.rstrip("/"), 0, 0, "cannot read: permission denied"))
        for entry, child in file_links:  # a file also read in its own place is read once, there
            st = entry.stat()
            if (st.st_dev, st.st_ino) in files:
                out.append(Entry(child, 0, 0, f"a link to a file read in its own place ({files[st.st_dev, st.st_ino]})"))
            else:
                out.append(Entry(child, st.st_size, st.st_mtime_ns))
        out.sort(key=lambda e: e.name)
        return out

    def read_bytes(self, name: str) -> bytes:
        return read_regular_file(self.path(name))

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def write_bytes(self, name: str, data: bytes, sync: bool = True) -> None:
        """Atomically: a temporary file beside it, then a rename."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def temp_dir(self, work: str) -> Path:
        """Where a shard is written before it is published: inside the output, so that the
        publishing rename stays on one file system."""
        folder = self.path(work)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def publish(self, local_file: Path, name: str) -> None:
        os.replace(local_file, self.path(name))

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def delete_tree(self, name: str) -> None:
        import shutil

        shutil.rmtree(self.path(name), ignore_errors=True)

    def makedirs(self, name: str = "") -> None:
        self.path(name).mkdir(parents=True, exist_ok=True)

    def open_input(self, name: str):
        """A random-access file for Parquet readers."""
        import pyarrow as pa

        return pa.OSFile(str(self.path(name)), "rb")


class ArrowStore(Store):
    """A prefix on any pyarrow filesystem (S3, GCS, HDFS)."""

    local = False

    def __init__(self, fs, root: str, uri: str):
        self.fs, self.root, self.uri = fs, root, uri

    def __getstate__(self):
        # pyarrow filesystems pickle (S3 with its options); kept explicit for Ray and the pool
        return {"fs": self.fs, "root": self.root, "uri": self.uri}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def full(self, name: str = "") -> str:
        return f"{self.root}/{name}" if name else self.root

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


def hidden(name: str) -> bool:
    """The one listing rule of every store: a file or folder whose name starts with '.'
    (`.DS_Store`, `.ipynb_checkpoints/`, `.git/`) is not part of a dataset, at any depth."""
    return any(part.startswith(".") and part not in (".", "..") for part in name.split("/"))


def _object_entry(name: str, size: int, mtime_ns: int) -> Entry:
    """A listed object; a key with an empty, '.' or '..' part (`cat/../dog/x.jpg`, `a//b.jpg`)
    exists on the store but cannot be read through a path: a recorded skip saying so."""
    if any(part in ("", ".", "..") for part in name.split("/")):
        return Entry(name, size, mtime_ns, "its key has an empty, '.' or '..' part, which cannot be read "
                                           "as a path: rename the object")
    return Entry(name, size, mtime_ns)


def _on_google_cloud() -> bool:
    """What google-auth checks too: the machine's firmware names Google (no network asked)."""
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text()
    except OSError:
        return False


def _sweep_temp_dirs() -> None:
    import shutil

    from augpipe.processes import alive

    for old in Path(tempfile.gettempdir()).glob("augpipe-*"):
        pid = old.name.removeprefix("augpipe-")
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def read_regular_file(path: str | os.PathLike) -> bytes:
    """A local file's bytes, refusing anything that is not a regular file at read time (a FIFO
    swapped in after the scan would block a reader forever: O_NONBLOCK opens it at once).
    os.open/os.read: a third of what open().read() costs, which counts for small images."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file: {path}")
        parts = [os.read(fd, st.st_size + 1)]
        while parts[-1]:  # a file that grew since fstat, or a short read
            parts.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 2 else b"".join(parts)


def read_source(store: Store, name: str) -> bytes:
    """A source file's bytes, or SkipInput with the reason it cannot be read."""
    try:
        return store.read_bytes(name)
    except NotRegularFile:
        raise SkipInput("not a regular file (a pipe, socket or device)") from None
    except IsADirectoryError:
        raise SkipInput("is a folder, not a file") from None
    except FileNotFoundError:
        raise SkipInput("vanished during the run (not found)") from None
    except OSError as exc:
        raise SkipInput(f"cannot read: {exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    except Exception as exc:
        if not is_arrow_error(exc):
            raise
        raise SkipInput(f"cannot read: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None


def is_arrow_error(exc: BaseException) -> bool:
    """pyarrow's own error for one key (ArrowInvalid: a key it cannot address): that key's problem."""
    import pyarrow as pa

    return isinstance(exc, pa.ArrowException)
