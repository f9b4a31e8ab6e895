"""The Ray engine (augpipe/engines/ray.py) on a real two-node cluster: the same bytes as the local
engine, retries, one-line errors, and a local Ray that starts and ends with the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augpipe import ExpandOptions, expand
from conftest import ENV, ROOT, augpipe, make_folder, run, s3_hashes, s3_source, shard_hashes


def _session(sid: int) -> list[str]:
    """The command lines of a session's live processes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != b"Z":
                    found.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
            except (OSError, IndexError, ValueError):
                continue
    return found


class _FakeRay:
    """ray.init failing as a raylet that timed out during start-up does, `fails` times."""

    def __init__(self, fails: int):
        self.fails, self.calls = fails, 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError("The current node timed out during startup. This could happen because ...")

    def shutdown(self) -> None:
        pass


def _ray_processes(mark: str) -> set[int]:
    """Ray's processes (its programs in their command lines) whose environment holds `mark`: a
    run's own, which all inherit its driver's, and not another test's Ray, started meanwhile by
    the other pytest worker (a CI run found that one's four)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if not (b"raylet" in cmd or b"gcs_server" in cmd or b"ray::" in cmd or b"default_worker.py" in cmd):
                    continue
                if mark.encode() in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.add(int(entry))
            except OSError:
                continue
    return found


def _marked(env: dict) -> tuple[dict, str]:
    """`env` with a mark of this run's own, and the mark (`_ray_processes`)."""
    import uuid

    mark = f"AUGPIPE_TEST_RUN={uuid.uuid4().hex}"
    return {**env, "AUGPIPE_TEST_RUN": mark.split("=", 1)[1]}, mark


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_a_driver_killed_during_rays_start_up_takes_rays_processes_with_it(tmp_path):
    pytest.importorskip("ray")
    import time

    data = make_folder(tmp_path / "data", per_class=20)
    env = {k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(augpipe("expand", data, "-r", "flips", "-o", tmp_path / "out", "--engine", "ray",
                                    "-w", "1", "-q"), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any("raylet" in c for c in _session(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("raylet" in c for c in _session(proc.pid)), "Ray did not start"
    time.sleep(0.5)  # the raylet starts its agents
    os.kill(proc.pid, 9)
    proc.wait()
    deadline = time.monotonic() + 15  # Ray's agents alone lived two minutes
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session(proc.pid) == []


@pytest.mark.parametrize("fails", [1, 2])
def test_rays_own_start_up_failure_is_retried_once_then_said(monkeypatch, fails):
    from augpipe.engines import ray as engine
    from augpipe.errors import EngineError

    fake = _FakeRay(fails)
    monkeypatch.setattr(engine, "_import_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_engine = engine.RayEngine(1)
    if fails == 1:
        ray_engine.__enter__()
        ray_engine._end_guard()
        assert fake.calls == 2 and ray_engine._started_here
        return
    with pytest.raises(EngineError, match=r"a local Ray did not start, twice \(The current node timed out during "
                                          r"startup.*\): start a cluster \(`ray start --head`\) and pass its "
                                          "address in RAY_ADDRESS") as caught:
        ray_engine.__enter__()
    assert fake.calls == 2 and caught.value.exit_code == 3 and "GUARD" not in "".join(os.environ)


def test_ray_on_two_nodes_writes_the_same_bytes_from_both(data, reference, ray_cluster, tmp_path):
    m = expand(data, "classic", tmp_path / "out",
               ExpandOptions(engine="ray", shard_size=30_000, progress=False, seed=3))
    assert shard_hashes(tmp_path / "out") == reference
    assert m["engine"]["name"] == "ray" and m["engine"]["nodes"] == 2 and m["engine"]["nodes_used"] == 2


def test_ray_with_s3_is_byte_identical(data, reference, ray_cluster, bucket):
    source = s3_source(data, bucket)
    done = run("expand", source, "-r", "classic", "-o", f"s3://{bucket}/out", "--shard-size", "30KB",
               "--engine", "ray", "--seed", "3", "-q")
    assert done.returncode == 0, done.stderr
    assert "ray: 2 workers on 2 nodes" in done.stdout
    assert s3_hashes(f"s3://{bucket}/out") == reference


def test_a_ray_worker_killed_mid_task_is_retried_and_the_bytes_are_the_same(data, reference, ray_cluster, tmp_path):
    from augpipe.engines.ray import KILL_ONCE

    marker = tmp_path / "killed"
    done = run("expand", data, "-r", "classic", "-o", tmp_path / "out", "--shard-size", "30KB", "--engine", "ray",
               "--seed", "3", "-q", env={KILL_ONCE: str(marker)})
    assert done.returncode == 0, done.stderr
    assert marker.is_file(), "no worker was killed"
    assert "1 task retried" in done.stdout
    assert shard_hashes(tmp_path / "out") == reference


def test_an_error_in_a_ray_task_is_not_retried_and_is_one_line(tmp_path, ray_cluster):
    data = make_folder(tmp_path / "data", per_class=4)
    (data / "dog" / "bad.jpg").write_bytes(b"not an image")
    done = run("expand", data, "-r", "flips", "-o", tmp_path / "out", "--engine", "ray", "--strict",
               "--split-by", "path", "-q")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "augpipe: error: dog/bad.jpg: not a readable image (unknown format or corrupt header) "
        "(--strict stops at the first bad input)"]


def test_without_ray_the_engine_is_one_line(tmp_path, data):
    script = ("import sys; sys.modules['ray'] = None\n"
              "from augpipe.cli import main\n"
              f"main(['expand', {str(data)!r}, '-r', 'flips', '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray'])")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "augpipe: error: --engine ray needs Ray: pip install 'augpipe[ray]'"


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_ray_started_for_the_run_ends_with_it(tmp_path, how):
    """Ctrl-C (to the whole process group, as a terminal sends it) shuts the local Ray down; a
    SIGKILL of the command takes Ray's processes with it too (its agents would linger a minute)."""
    pytest.importorskip("ray")
    data = make_folder(tmp_path / "data", per_class=200, size=96)
    env, mark = _marked({k: v for k, v in {**ENV, **os.environ}.items() if k != "RAY_ADDRESS"})
    before = _ray_processes(mark)
    proc = subprocess.Popen(augpipe("expand", data, "-r", "classic", "-k", "3", "--shard-size", "60KB", "-o",
                                    tmp_path / "out", "--engine", "ray", "-w", "2", "-q"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    if how == "SIGINT":
        # Ray's own C++ log lines ("[date time E pid] task_manager.cc: Failed to push error to
        # driver") may come first, from tasks the Ctrl-C reached; ours is the one Python line
        ours = [line for line in err.strip().splitlines() if not line.startswith("[")]
        assert proc.returncode == 130, err
        assert ours == ["augpipe: error: interrupted: finished shards are kept; run the same command again to resume"]
        assert "Traceback" not in err
    if how == "SIGTERM":
        ours = [line for line in err.strip().splitlines() if not line.startswith("[")]
        assert proc.returncode == 143, err
        assert ours == ["augpipe: error: terminated: finished shards are kept; run the same command again to resume"]
    deadline = time.monotonic() + 20  # a moment to go under load; lingering agents stay a minute
    while _ray_processes(mark) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_processes(mark) - before == set()


def test_a_library_callers_own_processes_outlive_the_ray_it_started(tmp_path):
    """A caller whose other thread starts processes while the run starts and ends its own Ray:
    none of them is ended with Ray's, and none of Ray's is left."""
    pytest.importorskip("ray")
    data = make_folder(tmp_path / "data", per_class=6, size=48)
    script = f"""
import subprocess, threading, time
from augpipe import ExpandOptions, expand
kids, stop = [], threading.Event()
def spawn():
    while not stop.is_set():
        kids.append(subprocess.Popen(["sleep", "120"]))
        stop.wait(0.1)
threading.Thread(target=spawn, daemon=True).start()
expand({str(data)!r}, "flips", {str(tmp_path / "out")!r}, ExpandOptions(engine="ray", workers=1, progress=False))
stop.set()
print(len(kids), sum(kid.poll() is not None for kid in kids))
for kid in kids:
    kid.kill()
"""
    env, mark = _marked({k: v for k, v in {**ENV, **os.environ}.items() if k != "RAY_ADDRESS"})
    before = _ray_processes(mark)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    started, ended = (int(n) for n in done.stdout.split())
    assert started > 5 and ended == 0
    deadline = time.monotonic() + 20
    while _ray_processes(mark) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_processes(mark) - before == set()


def test_ray_writes_the_bytes_of_the_local_engine_for_steps_that_take_other_images(ray_cluster, tmp_path):
    from conftest import class_scenes

    data = class_scenes(tmp_path / "coco", [[0, 1], [0], [1, 2], [], [0, 0, 2], [1], [0, 1, 1], [2]] * 2)
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("copies: 2\noutput: {format: png}\ntransforms:\n  - HorizontalFlip: {p: 0.5}\n"
                      "  - Mosaic: {p: 1, target_size: [96, 128], cell_shape: [48, 64]}\n  - CopyPaste: {p: 0.5}\n"
                      "  - MixUp: {p: 0.5}\n")
    options = dict(shard_size=8_000, progress=False, seed=5, val_fraction=0.2)
    expand(data, str(recipe), tmp_path / "local", ExpandOptions(workers=1, **options))
    m = expand(data, str(recipe), tmp_path / "ray", ExpandOptions(engine="ray", **options))
    # which nodes Ray gives these small tasks is its choice (a node whose worker a test killed may
    # sit one out); both nodes in use is test_ray_on_two_nodes_writes_the_same_bytes_from_both's
    assert m["engine"]["nodes"] == 2 and len(shard_hashes(tmp_path / "local")) > 2, m["engine"]
    assert shard_hashes(tmp_path / "ray") == shard_hashes(tmp_path / "local")


class _StartingRay(_FakeRay):
    """A Ray whose start runs one of its programs (a file in its package folder) while the
    caller starts a process of its own, then fails as `_FakeRay` does; or, with `fails=0`,
    starts, and its shutdown is cut short by a second Ctrl-C."""

    def __init__(self, folder: Path, fails: int):
        super().__init__(fails)
        folder.mkdir(exist_ok=True)
        (folder / "gcs.py").write_text("import time\ntime.sleep(60)\n")
        self.__file__, self.started = str(folder / "__init__.py"), []

    def init(self, **kwargs) -> None:
        self.started.append(subprocess.Popen([sys.executable, str(Path(self.__file__).parent / "gcs.py")]))
        self.started.append(subprocess.Popen(["sleep", "60"]))  # the caller's other thread's
        node = type("Node", (), {"all_processes": {"gcs": [type("Info", (), {"process": self.started[-2]})]}})
        self._private = type("P", (), {"worker": type("W", (), {"_global_node": node})})
        signal.signal(signal.SIGTERM, lambda *_: None)  # as ray.init does
        super().init(**kwargs)

    def shutdown(self) -> None:
        if not self.fails:
            raise KeyboardInterrupt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
@pytest.mark.parametrize("fails", [0, 2])
def test_a_start_or_shutdown_cut_short_ends_rays_processes_and_not_the_callers(monkeypatch, tmp_path, fails):
    """Ray's start failing (what it had started is ended) or its shutdown cut short by a second
    Ctrl-C (the leftovers still ended, the guard gone): the caller's own process stays."""
    from augpipe.engines import ray as engine
    from augpipe.errors import EngineError

    fake = _StartingRay(tmp_path / "ray", fails)
    monkeypatch.setattr(engine, "_import_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_engine, handler = engine.RayEngine(1), signal.getsignal(signal.SIGTERM)
    try:
        if fails:
            with pytest.raises(EngineError, match="a local Ray did not start, twice"):
                ray_engine.__enter__()
        else:
            ray_engine.__enter__()
            with pytest.raises(KeyboardInterrupt):
                ray_engine.__exit__(None, None, None)
        for proc in fake.started[::2]:  # Ray's
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        assert [proc.poll() for proc in fake.started] == [-signal.SIGKILL, None] * (fails or 1)
        assert ray_engine._guard is None and "GUARD" not in "".join(os.environ)
        assert signal.getsignal(signal.SIGTERM) is handler  # the caller's, not Ray's
    finally:
        signal.signal(signal.SIGTERM, handler)
        for proc in fake.started:
            proc.kill()
            proc.wait()
