"""The studio's web server: Starlette routes over a `Studio`, served by uvicorn on loopback.

Starlette and uvicorn: a small, well-kept ASGI pair with streaming responses (the tiles arrive
as they are made) and a server that stops cleanly on a signal; nothing of a larger framework
(templates, sessions, an ORM) is needed. Every request is checked before a route sees it: its
Host (DNS rebinding), its token (once in the URL, then a cookie; a header on every POST) and its
size. Only the page's own files and tiles made in this session are served.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import secrets
import socket
import sys
import time
from importlib import resources

from augpipe.errors import AugpipeError, RecipeError

COOKIE = "augpipe_studio_{port}"  # cookies are not kept apart by port: studios side by side are
HEADER = "x-augpipe-token"
MAX_BODY = 1 << 20
STALE_CHECK = 0.2  # seconds: how soon a stream notices that a newer render replaced it
STATIC = {"studio.js": "text/javascript", "studio.css": "text/css"}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "[::]")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def make_app(studio, token: str, hosts: set[str], port: int):
    """The ASGI app. `hosts`: the Host header values accepted (host:port)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    routes = [
        Route("/", _page), Route("/static/{name}", _static), Route("/api/state", _state),
        Route("/api/catalogue", _catalogue), Route("/api/files", _files),
        Route("/api/render", _render, methods=["POST"]), Route("/api/edit", _edit, methods=["POST"]),
        Route("/api/save", _save, methods=["POST"]), Route("/api/tile/{key}", _tile),
        Route("/api/tile/{key}/raw", _raw),
    ]
    app = Starlette(routes=routes)
    app.state.studio, app.state.token = studio, token
    return _Guard(app, token, {h.lower() for h in hosts}, COOKIE.format(port=port))


class _Guard:
    """ASGI middleware: Host, token and size, before anything else."""

    def __init__(self, app, token: str, hosts: set[str], cookie: str):
        self.app, self.token, self.hosts, self.cookie = app, token, hosts, cookie
        self.any_address = any(h.startswith("*:") for h in hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            return await PlainTextResponse(refusal[1], refusal[0], headers=SECURITY_HEADERS)(scope, receive, send)
        if request.query_params.get("token") and request.url.path == "/":
            response = RedirectResponse("/", 303, headers=SECURITY_HEADERS)
            # Lax, not Strict: a link to the printed URL from another site (a notebook on localhost)
            # is a cross-site navigation, whose redirect would drop a Strict cookie; every POST
            # needs the page's header token besides
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="lax")
            return await response(scope, receive, send)
        started = []

        async def sending(message):
            started.append(message["type"])
            await send(message)

        try:
            await self.app(scope, _bounded(receive), _with_headers(sending))
        except Exception as exc:  # noqa: BLE001 - one line on the console, an error for the page
            print(f"augpipe studio: unexpected error on {request.url.path}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            if not started:
                await PlainTextResponse(f"unexpected error: {type(exc).__name__}: {exc}", 500)(scope, receive, send)

    def _host_ok(self, host: str) -> bool:
        """The studio's own names; listening on every address, also any address literal (DNS
        rebinding needs a name), on its port."""
        if host in self.hosts:
            return True
        name, _, port = host.rpartition(":")
        if not self.any_address or f"*:{port}" not in self.hosts:
            return False
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True

    def _refusal(self, request) -> tuple[int, str] | None:
        if not self._host_ok(request.headers.get("host", "").lower()):
            return 403, "augpipe studio: this Host is not the studio's; open the URL augpipe printed"
        given = request.cookies.get(self.cookie) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "augpipe studio: no valid token; open the URL augpipe printed (it carries the token)"
        if request.method not in ("GET", "HEAD", "POST"):
            return 405, "augpipe studio: method not allowed"
        if request.method == "POST":
            if not secrets.compare_digest(request.headers.get(HEADER, "").encode(), self.token.encode()):
                return 403, "augpipe studio: a request without the page's token"
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1].lower() not in self.hosts:
                return 403, "augpipe studio: a request from another site"
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return 413, f"augpipe studio: a request body is at most {MAX_BODY} bytes"
        return None


def _bounded(receive):
    """The body cut off at MAX_BODY, whatever Content-Length said (or a chunked body)."""
    seen = [0]

    async def bounded():
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > MAX_BODY:
                raise _TooLarge
        return message

    return bounded


class _TooLarge(Exception):
    pass


def _with_headers(send):
    async def sending(message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                        if k.lower().encode() not in present]
            message = {**message, "headers": headers}
        await send(message)

    return sending


# ---------------------------------------------------------------- routes

async def _page(request):
    from starlette.responses import HTMLResponse

    text = (resources.files("augpipe.studio") / "static" / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(text.replace("{{token}}", request.app.state.token))


async def _static(request):
    from starlette.responses import PlainTextResponse, Response

    name = request.path_params["name"]
    if name not in STATIC:
        return PlainTextResponse("not found", 404)
    data = (resources.files("augpipe.studio") / "static" / name).read_bytes()
    return Response(data, media_type=STATIC[name])


async def _state(request):
    return _json(await _off_loop(request.app.state.studio.state))


async def _catalogue(request):
    from augpipe.catalog import transform_entries

    return _json(await _off_loop(transform_entries))


async def _files(request):
    studio = request.app.state.studio
    query, cls = request.query_params.get("q", ""), request.query_params.get("class") or None
    return _json({"files": await _off_loop(studio.files, query[:200], cls)})


async def _tile(request):
    return _served(request.app.state.studio.tiles.get(request.path_params["key"]))


async def _raw(request):
    return _served(request.app.state.studio.tiles.get(request.path_params["key"] + "-raw"))


def _served(found):
    from starlette.responses import PlainTextResponse, Response

    if found is None:
        return PlainTextResponse("no such tile (a newer render replaced it)", 404)
    data, media = found
    return Response(data, media_type=media)


async def _edit(request):
    body = await _body(request)
    if isinstance(body, Exception):
        return _json({"error": str(body)})
    studio = request.app.state.studio
    how = {k: body[k] for k in ("path", "name", "param", "value", "by") if k in body}
    try:
        return _json({"text": await _off_loop(studio.edit, str(body.get("text", "")), str(body.get("op", "")), **how)})
    except (AugpipeError, TypeError, ValueError, AttributeError) as exc:
        return _json({"error": str(exc)})


async def _save(request):
    body = await _body(request)
    if isinstance(body, Exception):
        return _json({"error": str(body)})
    studio = request.app.state.studio
    text = body.get("text", "")
    if not isinstance(text, str):
        return _json({"error": "not saved: the recipe is a string of YAML"})
    try:
        return _json(await _off_loop(studio.save, text, body.get("path") or None))
    except RecipeError as exc:
        return _json({"error": f"not saved: {exc}", **studio.located(str(exc), text)})
    except UnicodeError:
        return _json({"error": "not saved: the file name is not valid text (a lone surrogate)"})
    except (AugpipeError, OSError, ValueError) as exc:
        return _json({"error": f"not saved: {getattr(exc, 'strerror', None) or exc}"})


async def _render(request):
    from starlette.responses import StreamingResponse


    body = await _body(request)
    studio = request.app.state.studio
    if isinstance(body, Exception):
        return _stream([{"type": "error", "line": None, "message": str(body)}])
    text = body.get("text", "")
    try:
        args = _render_args(body)
        job = await _off_loop(studio.prepare, *args)
    except RecipeError as exc:
        return _stream([{"type": "error", **studio.located(str(exc), text)}])
    except (AugpipeError, ValueError) as exc:
        return _stream([{"type": "error", "line": None, "message": str(exc)}])
    return StreamingResponse(_events(job), media_type="application/x-ndjson")


def _render_args(body: dict) -> tuple:
    """(text, seed, copies, rows, Pick) from a render's body; ValueError saying what is wrong."""
    from augpipe.studio import Pick

    text, pick = body.get("text", ""), body.get("pick") or {}
    if not isinstance(text, str):
        raise ValueError("text: the recipe is a string of YAML")
    if not isinstance(pick, dict):
        raise ValueError("pick: an object like {\"mode\": \"random\", \"seed\": 0}")
    mode, files, cls = pick.get("mode", "random"), pick.get("files") or [], pick.get("class")
    if mode not in ("random", "class", "files"):
        raise ValueError("pick.mode is random, class or files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or len(files) > 64:
        raise ValueError("pick.files: a list of at most 64 paths")
    if cls is not None and not isinstance(cls, str):
        raise ValueError("pick.class: a class name")
    return (text, _whole(body, "seed", -(2**63), 2**63 - 1, 0), _whole(body, "copies", 0, 1000, 3),
            _whole(body, "rows", 1, 1000, 4), Pick(mode, _whole(pick, "seed", 0, 2**63 - 1, 0), cls, tuple(files)))


def _whole(body: dict, key: str, low: int, high: int, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key}: a whole number from {low} to {high}")
    return value


async def _events(job):
    """The job's events as lines, tiles as they finish. A stale render's stream ends at once
    (within STALE_CHECK s), its waiting tiles are dropped."""
    from augpipe.studio import Stale

    loop = asyncio.get_running_loop()
    pool = job.pool
    yield _line(job.start())
    futures = [loop.run_in_executor(pool.executor, pool.run, job.tile, row, copy) for row, copy in job.tasks]
    futures.append(loop.run_in_executor(pool.executor, pool.run, job.check))  # after the tiles: they come first
    pending, first = set(futures), None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=STALE_CHECK, return_when=asyncio.FIRST_COMPLETED)
            if job.stale():
                return
            for future in done:
                try:
                    event = future.result()
                except Stale:
                    return
                if event["type"] == "tile" and first is None:
                    first = round((time.perf_counter() - job.started) * 1000, 1)
                yield _line(event)
        yield _line({"type": "done", "ms": round((time.perf_counter() - job.started) * 1000, 1), "first_ms": first})
    finally:
        for future in futures:
            future.cancel()


def _stream(events: list[dict]):
    from starlette.responses import StreamingResponse

    async def lines():
        for event in events:
            yield _line(event)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _line(event: dict) -> bytes:
    return json.dumps(event, default=str).encode() + b"\n"


def _json(data):
    from starlette.responses import JSONResponse

    return JSONResponse(data)


async def _body(request) -> dict | Exception:
    try:
        data = json.loads(await request.body())
    except _TooLarge:
        return ValueError(f"a request body is at most {MAX_BODY} bytes")
    except ValueError:
        return ValueError("the request body is not JSON")
    return data if isinstance(data, dict) else ValueError("the request body is not a JSON object")


async def _off_loop(func, *args, **kwargs):
    """Blocking work on the default executor, not the tiles' threads (stale tiles may hold them)."""
    import functools

    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args, **kwargs))


# ---------------------------------------------------------------- serving

def bind(host: str, port: int) -> socket.socket:
    """A listening socket: `port`, or (given 0) a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        from augpipe.errors import UsageError

        hint = "choose another --port" if exc.errno == errno.EADDRINUSE else "check --host and --port"
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers a request may carry: the address it was bound to; on loopback its names,
    on every address (0.0.0.0, ::) this machine's names."""
    names = {url_host(host)}
    if host in LOOPBACK:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    if host in EVERY_ADDRESS:
        names |= {"127.0.0.1", "localhost", "[::1]", socket.gethostname(), socket.getfqdn(), "*"}
    return {f"{name}:{port}".lower() for name in names}


def serve(studio, sock: socket.socket, token: str, host: str) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn's own handlers: open streams get 2 s to end)."""
    import uvicorn

    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(studio, token, allowed_hosts(host, port), port), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, server_header=False)
    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            studio.generation += 1  # every render stale: their streams end, the shutdown is quick
            super().handle_exit(sig, frame)

    try:
        Server(config).run(sockets=[sock])
    finally:
        studio.close()
        sock.close()
