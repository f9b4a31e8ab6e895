"""The studio's server as a user's process: its token, Host check, size limits, streams and stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ENV, augpipe, make_folder

RECIPE = """name: mine
copies: 2
transforms:
  - HorizontalFlip: {p: 0.5}   # mirror
  - Rotate: {limit: [-20, 20], p: 0.8}
"""


class Studio:
    """`augpipe studio` in a process of its own, its URL read from what it prints."""

    def __init__(self, source: Path, work: Path, *args: str):
        self.proc = subprocess.Popen(augpipe("studio", source, "--port", "0", "--no-browser", *args), cwd=work,
                                     env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("open "):
                break
        else:
            raise AssertionError("the studio printed no URL: " + self.proc.stderr.read())
        self.url = line.split()[1]
        self.base, self.token = self.url.split("/?token=")
        self.host = self.base.split("://")[1]

    def request(self, path: str, body=None, headers=None, token: bool = True):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        sent = {"X-Augpipe-Token": self.token} if token and data is not None else {}
        sent.update(headers or {})
        if token:
            sent.setdefault("Cookie", f"augpipe_studio_{self.host.rsplit(':', 1)[1]}={self.token}")
        req = urllib.request.Request(self.base + path, data=data, headers=sent, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def events(self, body: dict) -> list[dict]:
        status, data, _ = self.request("/api/render", body)
        assert status == 200
        return [json.loads(line) for line in data.splitlines()]

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, "".join(self.lines) + out, err


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    source = make_folder(root / "src", per_class=6, size=40)
    work = root / "work"
    work.mkdir()
    (work / "r.yaml").write_text(RECIPE)
    running = Studio(source, work, "--recipe", "r.yaml")
    running.work = work
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def test_only_the_token_and_the_studios_own_host_get_in(studio):
    assert studio.url.startswith("http://127.0.0.1:")
    assert studio.request("/api/state", token=False)[0] == 403
    assert studio.request("/api/state", token=False, headers={"Cookie": f"augpipe_studio_1={studio.token}"})[0] == 403
    assert studio.request("/api/state")[0] == 200
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host
    assert studio.request("/api/state", headers={"Host": "evil.example:80"})[0] == 403
    assert studio.request(f"/api/state?token={studio.token}", token=False, headers={"Host": "evil.example"})[0] == 403
    # the printed URL: its token becomes a cookie, the address bar loses it
    req = urllib.request.Request(studio.url)
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(req, timeout=30)
    assert redirect.value.code == 303 and redirect.value.headers["Location"] == "/"
    cookie = redirect.value.headers["Set-Cookie"]
    assert studio.token in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    status, page, headers = studio.request("/")
    assert status == 200 and studio.token.encode() in page and "script-src 'self'" in headers["Content-Security-Policy"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_posts_need_the_pages_token_and_a_bounded_body(studio):
    body = {"text": RECIPE, "seed": 1}
    assert studio.request("/api/render", body, headers={"X-Augpipe-Token": "guess"})[0] == 403
    assert studio.request("/api/render", body, headers={"Origin": "http://evil.example"})[0] == 403
    # refused on its Content-Length, before the body is read
    with socket.create_connection(tuple(studio.host.rsplit(":", 1)[:1]) + (int(studio.host.rsplit(":", 1)[1]),)) as conn:
        conn.sendall((f"POST /api/render HTTP/1.1\r\nHost: {studio.host}\r\nX-Augpipe-Token: {studio.token}\r\n"
                      f"Cookie: augpipe_studio_{studio.host.rsplit(':', 1)[1]}={studio.token}\r\n"
                      f"Content-Length: {2 << 20}\r\n\r\n").encode())
        assert conn.recv(200).startswith(b"HTTP/1.1 413")
    status, data, _ = studio.request("/api/edit", b"[not json")
    assert status == 200 and "not JSON" in json.loads(data)["error"]


@pytest.mark.parametrize("path", ["/static/../../../etc/passwd", "/static/..%2f..%2f__init__.py", "/static/index.html",
                                  "/api/tile/..%2f..%2fetc%2fpasswd", "/api/tile/nope/raw", "/etc/passwd"])
def test_nothing_but_the_pages_files_and_this_sessions_tiles_is_served(studio, path):
    assert studio.request(path)[0] == 404


def test_a_render_streams_its_tiles_and_an_error_names_its_line(studio):
    events = studio.events({"text": RECIPE, "seed": 3, "copies": 2, "rows": 2})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("tile") == 6 and "check" in kinds
    assert "--recipe r.yaml --seed 3" in events[0]["command"]
    tile = next(e for e in events if e["type"] == "tile" and e["copy"] == 1)
    status, jpeg, headers = studio.request(tile["src"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert studio.request(tile["raw"])[0] == 200
    broken = RECIPE.replace("limit: [-20, 20]", "limit: [-20, 20], wobble: 3")
    events = studio.events({"text": broken, "seed": 3})
    assert len(events) == 1 and events[0]["type"] == "error" and events[0]["line"] == 5
    assert "transform 2 Rotate: field 'wobble' is not a parameter of Rotate" in events[0]["message"]


def test_edit_and_save_over_http_keep_the_comment_and_a_backup(studio):
    status, data, _ = studio.request("/api/edit", {"text": RECIPE, "op": "set", "path": [1], "param": "p",
                                                   "value": "0.3"})
    text = json.loads(data)["text"]
    assert "p: 0.3" in text and "# mirror" in text
    status, data, _ = studio.request("/api/save", {"text": text})
    assert json.loads(data)["saved"] == "r.yaml"
    assert (studio.work / "r.yaml").read_text() == text and (studio.work / "r.yaml.bak").read_text() == RECIPE
    status, data, _ = studio.request("/api/save", {"text": text, "path": "../outside.yaml"})
    assert "inside the working folder" in json.loads(data)["error"]
    assert not (studio.work.parent / "outside.yaml").exists()


def test_the_studio_stops_cleanly_on_sigterm_and_ctrl_c(tmp_path):
    source = make_folder(tmp_path / "src", per_class=3, size=32)
    for sig in (signal.SIGTERM, signal.SIGINT):
        running = Studio(source, tmp_path)
        assert running.request("/api/state")[0] == 200
        started = time.monotonic()
        code, out, err = running.stop(sig)
        assert code == 0 and "augpipe studio stopped" in out and "Traceback" not in err, err
        assert time.monotonic() - started < 30  # a bound on a hang, not a speed
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(running.host.rsplit(":", 1)[1])), timeout=2)


def test_a_port_in_use_is_one_line(tmp_path):
    source = make_folder(tmp_path / "src", per_class=2, size=32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(augpipe("studio", source, "--port", port, "--no-browser"), cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"augpipe: error: cannot listen on 127.0.0.1:{port}: Address already in use (choose another --port)"]


SLOW = "copies: 3\ntransforms:\n  - GlassBlur: {sigma: 0.7, max_delta: 4, iterations: 10, p: 1}\n"
FAST = "copies: 1\ntransforms:\n  - HorizontalFlip: {p: 1}\n"


def test_a_signal_stops_the_studio_while_stale_and_current_tiles_are_being_made(tmp_path):
    """A transform cannot be stopped half-way: a signal stops the studio without waiting for the
    tiles on its threads (whether a render newer than theirs exists or not)."""
    source = make_folder(tmp_path / "src", per_class=4, size=1600)
    running = Studio(source, tmp_path)
    try:
        slow = threading.Thread(target=running.events, args=({"text": SLOW, "seed": 1, "rows": 2, "copies": 3},),
                                daemon=True)
        slow.start()
        time.sleep(2.5)  # its first tiles are being made: seconds each
        events = running.events({"text": FAST, "seed": 1, "rows": 2, "copies": 1})
        assert [e["type"] for e in events].count("tile") == 4 and not [e for e in events if "failed" in e]
        again = threading.Thread(target=running.request, daemon=True,
                                 args=("/api/render", {"text": SLOW, "seed": 2, "rows": 2, "copies": 3}))
        again.start()
        time.sleep(2)  # a render streaming, its tiles being made, when the signal comes
    finally:
        stopping = time.monotonic()
        code, out, err = running.stop()
    # a bound on a hang, not a speed: waiting for the slow tiles would take minutes
    assert code == 0 and time.monotonic() - stopping < 60 and "Traceback" not in err, err


@pytest.mark.parametrize("body", [{"text": RECIPE, "seed": float("inf")}, {"text": RECIPE, "pick": "x"},
                                  {"text": RECIPE, "pick": {"files": "a.jpg"}}, {"text": 3},
                                  {"text": RECIPE, "rows": "4"}, {"text": RECIPE, "seed": 2**63}])
def test_a_render_of_the_wrong_shape_is_an_error_event(studio, body):
    data = json.dumps(body).encode()  # Infinity: Python's json writes and reads it
    events = studio.events(body) if "Infinity" not in data.decode() else [
        json.loads(line) for line in studio.request("/api/render", data)[1].splitlines()]
    assert len(events) == 1 and events[0]["type"] == "error" and events[0]["line"] is None


@pytest.mark.parametrize("path", [123, ["a.yaml"], {"a": 1}, True, "a\u0000b.yaml"])
def test_a_save_path_of_the_wrong_shape_is_one_line(studio, path):
    status, data, _ = studio.request("/api/save", {"text": RECIPE, "path": path})
    assert status == 200 and json.loads(data)["error"].startswith("not saved: ")


def test_listening_on_every_address_takes_address_literals_but_no_foreign_name():
    from augpipe.studio.server import _Guard, allowed_hosts

    every = _Guard(None, "t", allowed_hosts("0.0.0.0", 8765), "c")
    assert every._host_ok("192.0.2.7:8765") and every._host_ok("[2001:db8::1]:8765") and every._host_ok("localhost:8765")
    assert not every._host_ok("evil.example:8765") and not every._host_ok("192.0.2.7:80")
    loopback = _Guard(None, "t", allowed_hosts("127.0.0.1", 8765), "c")
    assert loopback._host_ok("127.0.0.1:8765") and not loopback._host_ok("192.0.2.7:8765")
