"""The review station's web application (Starlette): three pages, a JSON API, the audit folder's images.

Pages (static HTML in ``static/``; ``app.js`` fills them from the API, keeping the filters in the URL):

- ``GET /``: the queue, newest first; filters ``verdict``, ``camera``, ``defect_class``, ``model_version``,
  ``reviewed`` (``yes``/``no``) as query parameters;
- ``GET /frame?image=<path>[&filters]``: one frame, its layers and the answer controls;
- ``GET /summary[?filters]``: reviewed count, agreement of the model with the reviewers, escapes;
- ``GET /login?token=<token>[&reviewer=<name>]``: sets the session cookie and redirects to ``/``.

JSON API (errors are ``{"error": "<what is wrong>"}`` with status 400, 404, 413, 415 or 500):

- ``GET /api/frames?<filters>[&limit=N]`` -> ``{"frames": [<index record> + "answer": <latest review line> | null],
  "count": <frames the filters admit>, "total": <frames in the folder>, "options": {"verdict": [...], "camera":
  [...], "defect_class": [...], "model_version": [...]}, "unreadable_lines": N}`` (``frames`` newest first, the
  first ``limit`` of them);
- ``GET /api/frame?image=<path>[&filters]`` -> ``{"record", "answer" (or null), "answer_mask" (the mask file the
  answer stands for, or null), "labels" (good first, then the record's classes), "prev", "next", "next_unreviewed"
  (image paths or null, within the filtered queue), "position" (1-based, or null), "count"}``;
- ``POST /api/reviews`` with ``{"image", "label", "mask": "model"|"none"|"painted", "mask_png"?: <base64 PNG>,
  "reviewer"?}`` (``Content-Type: application/json``) -> the saved ``reviews.jsonl`` line;
- ``GET /api/summary[?filters]`` -> :func:`inspector.review.queue.summary`'s figures.

Files: ``GET /files/<path>`` (a PNG, JPEG or BMP inside the audit folder: frames, model masks, anomaly maps, painted
masks), ``GET /thumbs/<path>`` (its JPEG thumbnail, at most 160 px), ``GET /static/<name>`` (the package's static
folder). Anything else, a path with ``..``, an absolute path, or a link out of the folder is 404.

With a token, every request (pages, API, files, static) needs ``Authorization: Bearer <token>`` or the cookie
``/login`` sets (HttpOnly, SameSite=Strict; it holds a digest of the token, not the token); otherwise 401. Tokens
are compared in constant time. Blocking file work (reading the index, decoding PNGs, appending under the reviews
lock) runs in Starlette's thread pool, so one slow disk or a long lock wait does not stall other reviewers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request, cookie_parser
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inspector.artifacts.audit_folder import append_review, inside, reviewed_mask
from inspector.errors import UsageError
from inspector.review.answers import AnswerError, parse_answer
from inspector.review.queue import Filters, Folder, labels, neighbours, options, select, summary
from inspector.review.thumbs import Thumbnails

STATIC = Path(__file__).with_name("static")
COOKIE = "inspector_review"
MAX_BODY = 64 << 20  # bytes of a posted answer: a painted mask of a 50 MP frame as base64 fits many times over
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp"}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # the login link carries the token
    (b"content-security-policy", (b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                                  b"style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                  b"form-action 'self'")),
]


class ApiError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def session_value(token: str) -> str:
    """The cookie's value for ``token``: a digest, so a cookie copied from a browser's store does not reveal the
    token file's content (it still opens this station, as the token does)."""
    return hmac.new(token.encode(), b"inspector review session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class TokenGate:
    """Refuses every request without the token (except ``/login``, which checks it itself): 401, plain text
    ``token required`` (JSON under ``/api/``)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token
        self.session = session_value(token) if token else ""

    def allowed(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), self.token):
            return True
        return _same(cookie_parser(headers.get("cookie", "")).get(COOKIE, ""), self.session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] == "/login" \
                or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"].startswith("/api/"):
            response: Response = JSONResponse({"error": "token required"}, 401)
        else:
            response = PlainTextResponse("token required", 401)
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response: no sniffing, no framing, no referrer, scripts and styles
    from this origin only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _json(data: object, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers={"cache-control": "no-store"})


async def _api_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, ApiError)
    return _json({"error": str(err)}, err.status)


def _filters(request: Request) -> Filters:
    try:
        return Filters.from_query(request.query_params)
    except UsageError as err:
        raise ApiError(400, str(err)) from None


def _image_file(root: Path, relative: str) -> Path | None:
    """The image file ``relative`` names inside ``root`` (no ``..``, no absolute path, no link out), else None."""
    parts = PurePosixPath(relative).parts
    if ".." in parts or "\\" in relative or PurePosixPath(relative).suffix.lower() not in IMAGE_TYPES:
        return None
    return inside(root, relative)


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the answer is larger than {limit >> 20} MiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the answer is larger than {limit >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


class Station:
    """The routes' state: the audit folder (snapshot cache) and the thumbnail cache."""

    def __init__(self, root: Path, token: str | None) -> None:
        self.root, self.token = Path(root), token
        self.folder = Folder(self.root)
        self.thumbs = Thumbnails()

    # pages
    async def queue_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def frame_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "frame.html", headers={"cache-control": "no-cache"})

    async def summary_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "summary.html", headers={"cache-control": "no-cache"})

    async def login(self, request: Request) -> Response:
        reviewer = request.query_params.get("reviewer")
        target = "/" + (f"?{urlencode({'reviewer': reviewer})}" if reviewer else "")
        if self.token is None:
            return RedirectResponse(target, 303)
        if not _same(request.query_params.get("token", ""), self.token):
            return PlainTextResponse("token required", 401, headers={"www-authenticate": "Bearer"})
        response = RedirectResponse(target, 303)
        response.set_cookie(COOKIE, session_value(self.token), httponly=True, samesite="strict", path="/")
        return response

    # API
    async def frames(self, request: Request) -> Response:
        filters = _filters(request)
        limit = request.query_params.get("limit", "")
        if limit and not limit.isdigit():
            raise ApiError(400, f"limit must be a whole number, got {limit!r}")
        snapshot = await run_in_threadpool(self.folder.snapshot)
        items = select(snapshot, filters)
        return _json({"frames": items[: int(limit)] if limit else items, "count": len(items),
                      "total": len(snapshot.frames), "options": options(snapshot),
                      "unreadable_lines": snapshot.unreadable})

    async def frame(self, request: Request) -> Response:
        filters, image = _filters(request), request.query_params.get("image", "")
        if not image:
            raise ApiError(400, "image is required: /api/frame?image=<path as in index.jsonl>")
        snapshot = await run_in_threadpool(self.folder.snapshot)
        if image not in snapshot.by_image:
            raise ApiError(404, f"no frame {image} in the audit folder")
        record, answer = snapshot.frames[snapshot.by_image[image]], snapshot.answer(image)
        return _json({"record": record, "answer": answer,
                      "answer_mask": reviewed_mask(record, answer) if answer else None, "labels": labels(record),
                      **neighbours(snapshot, image, filters)})

    async def summary(self, request: Request) -> Response:
        filters = _filters(request)
        snapshot = await run_in_threadpool(self.folder.snapshot)
        return _json(summary(snapshot, filters))

    async def post_review(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "send the answer as application/json")
        try:
            payload = json.loads(await _body(request))
        except ValueError:
            raise ApiError(400, "the answer is not valid JSON") from None
        return _json(await run_in_threadpool(self._save, payload))

    def _save(self, payload: object) -> dict:
        image = payload.get("image") if isinstance(payload, dict) else None
        if not isinstance(image, str) or not image:
            raise ApiError(400, "image is required: the frame's path as in index.jsonl")
        snapshot = self.folder.snapshot()
        if image not in snapshot.by_image:
            raise ApiError(404, f"no frame {image} in the audit folder")
        try:
            review, png = parse_answer(payload, snapshot.frames[snapshot.by_image[image]], self.root)
        except AnswerError as err:
            raise ApiError(400, str(err)) from None
        try:
            return asdict(append_review(self.root, review, painted_png=png))
        except OSError as err:
            raise ApiError(500, f"the answer could not be saved: {err}") from None

    # files
    async def file(self, request: Request) -> Response:
        relative = request.path_params["path"]
        path = await run_in_threadpool(_image_file, self.root, relative)
        if path is None:
            return PlainTextResponse("not found", 404)
        return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()],
                            headers={"cache-control": "private, max-age=3600"})

    async def thumb(self, request: Request) -> Response:
        path = await run_in_threadpool(_image_file, self.root, request.path_params["path"])
        data = await run_in_threadpool(self.thumbs.get, path) if path is not None else None
        if data is None:
            return PlainTextResponse("not found", 404)
        return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})


def create_app(audit_dir: Path, token: str | None = None, allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The review station over the audit folder ``audit_dir``.

    Args:
        token: When given, every request needs it (see the module docstring); None: open to whoever reaches the port.
        allowed_hosts: ``Host`` header values to answer (others: 400), against DNS rebinding when the station is
            open on loopback; None: any.
    """
    station = Station(audit_dir, token)
    routes = [
        Route("/", station.queue_page),
        Route("/frame", station.frame_page),
        Route("/summary", station.summary_page),
        Route("/login", station.login),
        Route("/api/frames", station.frames),
        Route("/api/frame", station.frame),
        Route("/api/summary", station.summary),
        Route("/api/reviews", station.post_review, methods=["POST"]),
        Route("/files/{path:path}", station.file),
        Route("/thumbs/{path:path}", station.thumb),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    middleware += [Middleware(SecurityHeaders), Middleware(TokenGate, token=token)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={ApiError: _api_error})
    app.state.station = station
    return app
