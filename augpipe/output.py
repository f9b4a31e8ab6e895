"""An output folder's life: owned by one run, prepared, resumed, replaced, finished.

The Datasink shape: `OutputFolder.prepare` before any task, tasks publish shards and their
records, `finish` writes the manifest last. A run owns its folder through a lock file naming it
(pid, host, a token); every shard is published only while the lock still names its run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from augpipe.errors import OutputError, RunLockedError, SourceError
from augpipe.layout import (LEGACY_MANIFEST, LOCK, MANIFEST, RUN_FILE, SKIPPED, WORK_DIR, is_shard_name, listed,
                            record_name, shards_among)
from augpipe.manifest import Manifest, ShardRecord, read_manifest, unclaimed_shards
from augpipe.processes import alive, process_start

TMP_DIR = f"{WORK_DIR}/tmp"
LOCK_SETTLE = 1.0  # seconds, where an object store offers no conditional write
OURS = {MANIFEST, LEGACY_MANIFEST, LOCK, WORK_DIR, SKIPPED}
_TEMPORARY = re.compile(r"\.(_augpipe\.json|augpipe\.json|_augpipe_skipped\.jsonl)\.\d+\.tmp")


# ---------------------------------------------------------------- the lock

@dataclass
class RunLock:
    store: object
    token: str

    @classmethod
    def acquire(cls, store) -> RunLock:
        """Take the folder for this run, or refuse with a line naming the run that has it."""
        me = {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
              "started": process_start(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            if _create_exclusive(store, LOCK, json.dumps(me).encode()):
                return cls(store, me["token"])
            owner = _read_json(store, LOCK)
            if owner is not None and not _stale(owner):
                raise RunLockedError(
                    f"{store.display()} is being written by another augpipe run (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, since {owner.get('since')}): wait for it, or stop it; if that run "
                    f"is gone, remove {store.display(LOCK)}")
            # a dead run's lock (or a torn one), removed only if it is still the one judged dead: a
            # run that took it over in the meantime keeps it
            if _read_json(store, LOCK) == owner:
                store.delete(LOCK)
        raise RunLockedError(f"{store.display()}: another run took the lock at the same moment: try again")

    def owned(self) -> bool:
        owner = _read_json(self.store, LOCK)
        return owner is not None and owner.get("token") == self.token

    def release(self) -> None:
        if self.owned():
            self.store.delete(LOCK)


def _stale(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False  # another machine's run: only its owner can tell
    return not alive(owner["pid"], owner.get("started"))


def _create_exclusive(store, name: str, data: bytes) -> bool:
    created = store.create_exclusive(name, data)
    if created is not None:
        return created
    # No conditional write to be had (pyarrow exposes none): write, let a PUT of another run
    # starting at the same moment land, then read back: the last PUT wins, the other run sees it.
    if store.exists(name):
        return False
    store.write_bytes(name, data)
    time.sleep(LOCK_SETTLE)
    return _read_json(store, name) == json.loads(data)


def _read_json(store, name: str):
    try:
        return json.loads(store.read_text(name))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- preparing

# What differs between a run and the output it finds, in words (the identity's fields are internal)
_WHY = {
    "augpipe_version": "made with another augpipe version",
    "recipe": "made with another recipe",
    "seed": "made with another seed",
    "source": "made from another source",
    "options": "made with other options",
    "source_files": "made before the source files changed (a file was added, removed or edited since)",
}


def _differences(identity: dict, previous: dict) -> str:
    keys = [k for k in identity if identity.get(k) != previous.get(k)]
    if "source_files" in keys and _split_by(identity) != _split_by(previous):
        keys.remove("source_files")  # the files are told apart another way (content or path), not changed
    return "; ".join(_why(k, identity, previous) for k in keys) or "made with other settings"


def _as_made(identity: dict, previous: dict) -> str:
    """Where only the seed and expand's options differ: the arguments that give those it was made
    with (to resume or mend that output, not replace it)."""
    from augpipe.options import EXPAND_FLAGS, expand_arguments

    was, now = previous.get("options"), identity.get("options")
    if not (isinstance(was, dict) and isinstance(now, dict)) or \
            any(identity.get(k) != previous.get(k) for k in set(identity) | set(previous) if k not in ("options", "seed")):
        return ""
    changed = {k for k in set(was) | set(now) if was.get(k) != now.get(k)}
    if not changed <= set(EXPAND_FLAGS) or not all(k in was for k in changed):
        return ""
    seed = [] if identity.get("seed") == previous.get("seed") else [f"--seed {previous.get('seed')}"]
    if not changed and not seed or not isinstance(previous.get("seed"), int):
        return ""
    given = " ".join([*seed, *expand_arguments(was, changed)])
    off = ", ".join(EXPAND_FLAGS[k] for k in sorted(changed) if was[k] is False)  # a switch it was made without
    said = " and ".join(part for part in (given, off and f"without {off}") if part)
    what = " and ".join(w for w, differs in (("seed", seed), ("options", changed)) if differs)
    return f"; or, to resume or mend it, give the {what} it was made with: {said}"


def _split_by(identity: dict):
    options = identity.get("options")
    return options.get("split_by") if isinstance(options, dict) else None


def _why(key: str, identity: dict, previous: dict) -> str:
    """One difference in words; the options by name, as they were and are (copies 3, now 2)."""
    was, now = previous.get(key), identity.get(key)
    if key == "options" and isinstance(was, dict) and isinstance(now, dict):
        changed = [f"{name} {was.get(name, 'unset')}, now {now.get(name, 'unset')}"
                   for name in sorted(set(was) | set(now)) if was.get(name) != now.get(name)]
        if changed:
            return f"{_WHY[key]} ({'; '.join(changed)})"
    if key == "seed" and isinstance(was, int) and isinstance(now, int):
        return f"{_WHY[key]} ({was}, now {now})"
    return _WHY.get(key, f"made with another {key}")


def _unread_then(manifest: dict, read_now) -> list[str]:
    """The sources a finished run skipped for want of reading them (`store.base.unread`) that are
    among `read_now`."""
    from augpipe.store.base import unread

    return [s["path"] for s in manifest.get("skipped") or [] if isinstance(s, dict)
            and s.get("path") in read_now and unread(str(s.get("reason")))]


class OutputFolder:
    """One run's output: a local folder or an object-store prefix."""

    def __init__(self, store):
        self.store = store
        self.lock: RunLock | None = None
        self.mended: str | None = None  # why a finished output of this very run is written again

    def check_usable(self) -> None:
        """Before anything is written: the place is a folder that is empty or augpipe's."""
        store = self.store
        store.check()
        problem = store.not_a_folder()
        if problem is not None:
            raise OutputError(f"cannot write to {store.display()}: {problem}: remove it or choose another --out")
        names = store.names()
        if shards := unclaimed_shards(store, names):  # leftovers such as the lock prove nothing
            raise OutputError(f"output folder {store.display()} holds augpipe shards ({listed(shards)}) but no "
                              f"{MANIFEST}: augpipe cannot tell which run wrote them, so it replaces none; put "
                              "the manifest back, delete them yourself, or choose another --out")
        if names and not any(n in OURS for n in names):
            raise OutputError(f"output folder {store.display()} is not empty and holds no augpipe output "
                              f"(e.g. {names[0]}): choose another --out")

    def prepare(self, identity: dict, overwrite: bool, shards: list[str] = (), read_now=frozenset()) -> dict | None:
        """Own the folder and make it ready for a run that will write `shards`. Returns the
        finished manifest of this very run, if there is one and `overwrite` is not asked (nothing
        to do; with it, every shard is written anew, none kept from an interrupted run): not where it skipped
        a source it could not read while it wrote its shards that this run's scan found readable
        (`read_now`: the paths it plans; gone for a moment, a read error), which would stay out for
        good. (A source its scan could not list is another source set: another run's output.)"""
        self.check_usable()
        try:
            self.store.makedirs()
            self.lock = RunLock.acquire(self.store)
        except OSError as exc:
            raise OutputError(f"cannot write to {self.store.display()}: {exc.strerror or exc}") from None
        previous = self._previous_identity()
        if previous is None:
            self._check_strangers(shards)
            self.store.delete_tree(f"{WORK_DIR}/done")  # shard records of no run this one can tell
        if previous is not None and previous != identity:
            if not overwrite:
                raise OutputError(f"{self.store.display()} holds output {_differences(identity, previous)}: "
                                  f"use --overwrite to replace it, or another --out{_as_made(identity, previous)}")
            if not self.lock.owned():  # nothing is removed but by the run that holds the folder
                raise RunLockedError(f"{self.store.display()}: another run took the lock: nothing was removed")
            _CHANGED.append(self.store.display())
            self.remove_previous()
        self._remove_temporaries()
        _CHANGED.append(self.store.display())
        if overwrite:  # asked for: this very run's output is written again too, not kept nor resumed
            self.store.delete_tree(WORK_DIR)
        done = None if overwrite else self._readable_manifest()
        if done is not None and done.get("identity") == identity:
            if not self._complete(done):
                self.mended = "a shard of this output was damaged or gone since it was written: every shard written anew"
            elif not _unread_then(done, read_now):
                self.store.delete_tree(WORK_DIR)  # a run killed after its manifest landed left these
                return done
        try:
            self.store.delete_tree(TMP_DIR)
            self.store.makedirs(TMP_DIR)
            self.store.makedirs(f"{WORK_DIR}/done")
            self.store.delete(MANIFEST)
            # the shards it will write, so that --overwrite later deletes those and nothing else,
            # should this run be killed before its manifest lists them
            self.store.write_bytes(RUN_FILE, json.dumps({"identity": identity, "shards": list(shards)}).encode())
        except OSError as exc:
            raise OutputError(f"cannot write to {self.store.display()}: {exc.strerror or exc}") from None
        return None

    def _remove_temporaries(self) -> None:
        """What a run killed mid-write left: `._augpipe.json.<pid>.tmp` and the like."""
        for name in self.store.names():
            if _TEMPORARY.fullmatch(name):
                self.store.delete(name)

    def _readable_manifest(self) -> dict | None:
        """The manifest as a dict when it passes `Manifest.load`'s checks, else None: a damaged
        one is no finished output (the run writes a new one)."""
        from augpipe.manifest import Manifest

        try:
            return Manifest.load(self.store).to_dict()
        except SourceError:
            return None

    def _check_strangers(self, planned) -> None:
        """Shards beside a manifest that does not read (and no run record): this run writes those of
        the names it plans over them, whole (the same run again); any other it cannot tell whose it
        is, and would leave beside its own."""
        manifest = read_manifest(self.store)
        if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list):
            return  # it says which shards are whose
        strangers = [n for n in shards_among(self.store.names()) if n not in set(planned)]
        if strangers:
            raise OutputError(f"{self.store.display()} holds augpipe shards ({listed(strangers)}) this run would not "
                              f"write, and its {MANIFEST} does not read: augpipe cannot tell which run wrote them, so "
                              "it replaces none; delete them yourself, or choose another --out")

    def _previous_identity(self) -> dict | None:
        run = _read_json(self.store, RUN_FILE)
        if isinstance(run, dict) and isinstance(run.get("identity"), dict):
            return run["identity"]
        m = read_manifest(self.store)
        identity = m.get("identity") if isinstance(m, dict) else None
        return identity if isinstance(identity, dict) else None

    def _complete(self, m: dict) -> bool:
        """Every shard the manifest lists there at its size and, on a local disk, its sha256 (a
        shard damaged at the same size is no finished output; a bucket's are not read whole for it:
        `augpipe inspect --verify` does)."""
        from augpipe.dataset import changed_shards

        return not changed_shards(self.store, m.get("shards", []))

    def remove_previous(self) -> None:
        """Another run's output, for --overwrite: the shards its manifest lists, or that the run
        planned when it was killed before its manifest, its manifest and its work folder. A file
        merely named like a shard stays."""
        ours = set()
        manifest = read_manifest(self.store)
        if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list):
            ours |= {s.get("name") for s in manifest["shards"] if isinstance(s, dict)}
        run = _read_json(self.store, RUN_FILE)
        if isinstance(run, dict) and isinstance(run.get("shards"), list):
            ours |= set(run["shards"])
        for name in self.store.names():
            if name in ours and is_shard_name(name):
                self.store.delete(name)
        for name in (MANIFEST, LEGACY_MANIFEST, SKIPPED):
            self.store.delete(name)
        self.store.delete_tree(WORK_DIR)

    # ------------------------------------------------------------ resuming

    def finished(self, shard_names: list[str]) -> dict[str, ShardRecord]:
        """Records of the shards an interrupted run finished: the shard and its record both
        there, and the shard's size and sha256 those of its record (re-read: a shard damaged at
        the same size is redone)."""
        def check(name: str) -> ShardRecord | None:
            record = ShardRecord.from_dict(_read_json(self.store, record_name(name)))
            if record is None or self.store.size(name) != record.bytes:
                return None
            return record if self.store.sha256(name) == record.sha256 else None

        names = [n for n in shard_names if self.store.exists(record_name(n))]
        with ThreadPoolExecutor(8) as pool:
            found = dict(zip(names, pool.map(check, names)))
        return {n: r for n, r in found.items() if r is not None}

    # ------------------------------------------------------------ finishing

    def finish(self, manifest: Manifest) -> None:
        manifest.save(self.store)
        self.store.delete_tree(WORK_DIR)

    def release(self) -> None:
        if self.lock is not None:
            try:
                self.lock.release()
            except OSError:
                pass  # the folder is gone or read-only now: nothing more to give back
            self.lock = None


_CHANGED: list[str] = []  # the outputs this process has begun to change (`prepare` past its checks)


def changed() -> bool:
    """Whether this process has begun to change an output: an expand interrupted before (while it
    hashed its sources) left the output as it was, a finished run's included."""
    return bool(_CHANGED)
