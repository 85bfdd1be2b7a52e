"""The web app: the page, its JSON API and the store's thumbnails (FastAPI).

Routes:
    GET  /                 the page; ``?observation=ID`` (plus metadata and filter fields)
                           renders that observation's answer and look-alikes
    POST /                 the page's form (multipart: ``photo`` or ``observation`` + fields)
    POST /api/identify     multipart ``photo`` + fields, or JSON {observation_id | vector,
                           metadata fields, filters, k}
    GET  /api/search       ``observation`` + filters + ``k``
    GET  /api/info         store, run, space, limits and the drop-down values
    GET  /images/{id}      a re-encoded JPEG of a store image (``?size=`` 128..1024)
    GET  /static/...       the page's stylesheet, script and placeholder

Safety: request bodies over the upload cap are refused before parsing, Host headers
must name this server (no DNS rebinding), responses carry a strict Content-Security-
Policy, FastAPI's interactive docs (which load scripts from a CDN) are off, and
errors never include tracebacks. Every error the server answers (a bad value, an
unknown route or method, a bad Host header, an upload over the cap, a bug) is one JSON
shape, ``{"error": "..."}``, with no traceback and no path on the server in it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from sporeprint import __version__
from sporeprint.errors import SporeprintError, user_error_types
from sporeprint.serve.service import (
    FILTER_FIELDS,
    ROLES,
    NotFound,
    Service,
    TooLarge,
    parse_filters,
    parse_k,
    parse_metadata,
    shown,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Fields of an identify request besides filters and metadata (the page's form sends
# `observation`, scripts may too). Any other field is metadata, checked by the store's
# metadata contract (an unknown name is an error there).
REQUEST_FIELDS = {"observation", "observation_id", "vector", "k"}
# Multipart part header/field slack on top of the photo itself.
FORM_OVERHEAD = 64 * 1024
# Request fields are flat (a vector is a list, or a list of one list): deeper JSON is refused.
MAX_JSON_DEPTH = 4
# Observation ids are the store's BIGINT.
ID_RANGE = (-(2 ** 63), 2 ** 63 - 1)
# Error messages are cut here, so no request can make the server echo megabytes back.
MAX_ERROR_CHARS = 1000


class BodyLimit:
    """ASGI middleware: refuses a request body over ``limit`` bytes with 413, whether it
    says its length up front or streams it, before the app parses any of it.

    The rest of a refused body is read and dropped (up to ``DRAIN_FACTOR`` times the
    limit) so that a browser gets the 413 answer instead of a reset connection; larger
    bodies are cut off at once."""

    DRAIN_FACTOR = 8

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            if length.isdigit() and int(length) <= self.DRAIN_FACTOR * self.limit:
                await self._drain(receive, 0)
            return await _too_large(self.limit, scope, send)
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                if more:
                    await self._drain(receive, size)
                return await _too_large(self.limit, scope, send)
            body.append(chunk)
        data = b"".join(body)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive, size: int) -> None:
        while size <= self.DRAIN_FACTOR * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


async def _too_large(limit: int, scope, send) -> None:
    await _send_error(send, 413, f"the request is over the upload limit of {limit:,} bytes; "
                                 "send a smaller photo", close=True)


async def _send_error(send, status: int, text: str, close: bool = False) -> None:
    """An ``{"error": text}`` answer sent by a middleware, outside the app."""
    body = json.dumps({"error": text}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": body})


class HostCheck:
    """ASGI middleware: the Host header must name this server (``allowed`` names, ``*`` =
    any), so a page on another site cannot reach it through a DNS name it rebinds to
    127.0.0.1. Other hosts get a 400 ``{"error": ...}``."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope, receive, send):
        if "*" in self.allowed or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(raw) in self.allowed:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _send_error(send, 400, f"the Host header {shown(raw)} does not name this server; "
                                     "open it by the address it was started on (e.g. "
                                     "http://127.0.0.1:PORT)")


def host_name(value: str) -> str:
    """The host of a Host header value, lower case, without the port (``[::1]`` kept
    bracketed)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityHeaders:
    """ASGI middleware adding the page's Content-Security-Policy and friends."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def allowed_hosts(host: str) -> list[str]:
    """Host header values the server answers: loopback names, plus the bound address;
    a wildcard bind (0.0.0.0, ::) answers any host name."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    names = ["127.0.0.1", "localhost", "[::1]", "::1"]
    return names if host in names else [*names, host]


def _status(exc: BaseException) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TooLarge):
        return 413
    return 400


def _split_fields(fields: dict) -> tuple[dict, dict, object]:
    filters = {k: v for k, v in fields.items() if k in FILTER_FIELDS}
    metadata = {k: v for k, v in fields.items()
                if k not in FILTER_FIELDS and k not in REQUEST_FIELDS}
    return metadata, filters, fields.get("k")


def _observation_id(value) -> int:
    bad = SporeprintError(f"observation id {shown(value)} is not a whole number in "
                          f"{ID_RANGE[0]}..{ID_RANGE[1]}")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad
    try:
        x = int(value.strip()) if isinstance(value, str) else value
    except ValueError:  # not digits, or more digits than Python converts
        raise bad from None
    if not ID_RANGE[0] <= x <= ID_RANGE[1]:
        raise bad
    return x


def _json_depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a number is 0)."""
    depth, level = 0, [value]
    while True:
        inner = [x for x in level if isinstance(x, (list, dict))]
        if not inner:
            return depth
        depth += 1
        level = [v for x in inner for v in (x.values() if isinstance(x, dict) else x)]


def _server_paths(service: Service) -> list[str]:
    """Folders on the server whose paths never go into an answer's error message."""
    roots = {tempfile.gettempdir(), os.getcwd(), str(Path.home()), sys.prefix,
             str(Path(service.db.store.path).resolve().parent), str(HERE.parents[1])}
    for root in list(roots):
        roots.add(os.path.realpath(root))
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


def _public_message(text: str, roots: list[str]) -> str:
    for root in roots:
        text = text.replace(root, "<server folder>")
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "... (message cut)"
    return text


def create_app(service: Service, host: str = "127.0.0.1") -> FastAPI:
    """The app over an open :class:`Service`."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    limits = service.limits
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))
    page = env.get_template("page.html")
    app = FastAPI(title="sporeprint", version=__version__, debug=False, docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.service = service
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    errors = user_error_types()

    def render(form: dict, result: dict | None = None, error: str | None = None,
               preview: bytes | None = None, status: int = 200) -> HTMLResponse:
        html = page.render(info=service.info(), form=form, result=result, error=error,
                           roles=ROLES, preview=base64.b64encode(preview).decode()
                           if preview else None)
        return HTMLResponse(html, status_code=status)

    async def identify(fields: dict, photo: bytes | None) -> dict:
        metadata, filters, k = _split_fields(fields)
        metadata, filters = parse_metadata(metadata), parse_filters(filters)
        k = parse_k(k, limits)
        if photo:
            return await run_in_threadpool(service.identify_photo, photo, metadata, filters, k)
        if fields.get("vector") is not None:
            return await run_in_threadpool(service.identify_vector, fields["vector"], metadata,
                                           filters, k)
        obs = fields.get("observation_id", fields.get("observation"))
        if obs is None or str(obs).strip() == "":
            raise SporeprintError("send a photo, an observation_id or a vector")
        return await run_in_threadpool(service.identify_observation, _observation_id(obs),
                                       metadata, filters, k)

    async def read_form(request: Request) -> tuple[dict, bytes | None]:
        fields: dict = {}
        photo = None
        try:
            form = await request.form(max_files=1, max_fields=40, max_part_size=64 * 1024)
        except HTTPException as exc:  # starlette's multipart parser: a malformed body
            raise SporeprintError(f"the multipart body cannot be read ({exc.detail}); send "
                                  "multipart/form-data with a 'photo' file field") from None
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile) and key != "photo":
                    raise SporeprintError(f"unexpected file field {shown(key)}; send the photo "
                                          "as 'photo'")
                if key == "photo":
                    # A form whose file input was left empty sends an empty part.
                    data = await value.read() if isinstance(value, UploadFile) else value
                    if data and not isinstance(data, bytes):
                        raise SporeprintError("send the photo as a file in the field 'photo'")
                    photo = data or None
                elif key in fields:
                    raise SporeprintError(f"field {shown(key)} given twice")
                else:
                    fields[key] = value
        finally:
            await form.close()
        return fields, photo

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request):
        fields = dict(request.query_params)
        if not fields.get("observation"):
            return render(fields)
        try:
            return render(fields, await identify(fields, None))
        except errors as exc:
            return render(fields, error=str(exc), status=_status(exc))

    @app.post("/", response_class=HTMLResponse)
    async def home_form(request: Request):
        fields: dict = {}
        try:
            fields, photo = await read_form(request)
            if photo:
                fields.pop("observation", None)
            result = await identify(fields, photo)
            preview = await run_in_threadpool(service.preview, photo) if photo else None
            return render(fields, result, preview=preview)
        except errors as exc:
            return render(fields, error=str(exc), status=_status(exc))

    @app.post("/api/identify")
    async def api_identify(request: Request):
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = await request.json()
            except (ValueError, RecursionError):  # RecursionError: nested past Python's stack
                raise SporeprintError("the body is not valid JSON (or nests too deeply to "
                                      "read); send a flat JSON object") from None
            if not isinstance(body, dict):
                raise SporeprintError("send a JSON object, e.g. {\"observation_id\": 123}")
            if _json_depth(body) > MAX_JSON_DEPTH:
                raise SporeprintError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels; "
                                      "send a flat object whose only list is the vector")
            return await identify(body, None)
        if ctype.startswith("multipart/form-data"):
            fields, photo = await read_form(request)
            if not photo and "observation_id" not in fields:
                raise SporeprintError("send the photo as the multipart file field 'photo'")
            return await identify(fields, photo)
        raise SporeprintError("send multipart/form-data with a 'photo' file, or JSON "
                              "{\"observation_id\": ...} or {\"vector\": [...]}")

    @app.get("/api/search")
    async def api_search(request: Request):
        fields = dict(request.query_params)
        if not fields.get("observation"):
            raise SporeprintError("pass ?observation=ID (a stored observation); to search with "
                                  "a photo, POST it to /api/identify")
        obs = _observation_id(fields.pop("observation"))
        k = parse_k(fields.pop("k", None), limits)
        filters = parse_filters(fields)
        return await run_in_threadpool(service.search, obs, filters, k)

    @app.get("/api/info")
    async def api_info():
        return service.info()

    @app.get("/images/{image_id:int}")
    async def image(image_id: int, size: str = "256"):
        size_px = int(size) if size.isdigit() and len(size) < 6 else size
        data = await run_in_threadpool(service.thumbnail, image_id, size_px)
        if data is None:
            return Response((HERE / "static" / "placeholder.svg").read_bytes(),
                            media_type="image/svg+xml",
                            headers={"cache-control": "private, max-age=3600"})
        return Response(data, media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=3600"})

    roots = _server_paths(service)

    def error(status: int, text: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": _public_message(text, roots)}, status_code=status,
                            headers=headers)

    async def on_user_error(request: Request, exc: Exception):
        return error(_status(exc), str(exc))

    async def on_http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            text = (f"nothing at {shown(request.url.path)}; the API is /api/identify, "
                    "/api/search and /api/info, the page is /")
        elif exc.status_code == 405:
            allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
            text = (f"{request.method} is not allowed on {shown(request.url.path)}"
                    + (f"; use {allow}" if allow else ""))
        else:
            text = str(exc.detail)
        return error(exc.status_code, text, exc.headers)

    async def on_invalid_request(request: Request, exc: RequestValidationError):
        where = [f"{'.'.join(map(str, e.get('loc', ())[1:]))}: {e.get('msg', '')}"
                 for e in exc.errors()[:3]]
        return error(400, f"bad request ({'; '.join(where)})")

    async def on_bug(request: Request, exc: Exception):
        # Logged with its traceback by the server; the answer says only that it happened.
        return error(500, "the server failed on this request (a bug; the server's log has "
                          "the details)")

    for error_type in errors:
        app.add_exception_handler(error_type, on_user_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(Exception, on_bug)
    # The last added runs first: the Host check, then the body cap, then the headers.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(HostCheck, allowed=allowed_hosts(host))
    return app
