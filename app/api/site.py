"""Site routes (liveness, readiness, OpenAPI and its /docs page, browser client) and app-wide HTTP
hooks: security headers, chunked bodies."""

import logging

import redis
from flask import Blueprint, Flask, current_app, request, send_from_directory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from app.api.openapi import build_spec
from app.errors import error_response
from app.extensions import db, socketio

log = logging.getLogger(__name__)

bp = Blueprint("site", __name__)

READY = "ok"  # a readiness check that passed

SOCKETIO_BUNDLE = "node_modules/socket.io-client/dist"

# Every file the browser client's page loads: URL under /client/ -> file under PUBLIC_DIR.
# Nothing else is served from there (package*.json, node_modules, whatever else lies there).
CLIENT_FILES = {
    "index.html": "index.html",
    "client.js": "client.js",
    "style.css": "style.css",
    "vendor/socket.io.min.js": f"{SOCKETIO_BUNDLE}/socket.io.min.js",
    "vendor/socket.io.min.js.map": f"{SOCKETIO_BUNDLE}/socket.io.min.js.map",
}

SWAGGER_UI = "node_modules/swagger-ui-dist"
# The API reference page (/docs/): Swagger UI from its npm package, started by docs/docs.js.
DOCS_FILES = {
    "index.html": "docs/index.html",
    "docs.js": "docs/docs.js",
    "swagger-ui.css": f"{SWAGGER_UI}/swagger-ui.css",
    "swagger-ui-bundle.js": f"{SWAGGER_UI}/swagger-ui-bundle.js",
    "favicon-32x32.png": f"{SWAGGER_UI}/favicon-32x32.png",
}
# The page loads its script, style and Socket.IO connection from its own origin only
# (`'self'` covers the same-origin ws:), and no other site may frame it.
CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
# Swagger UI draws its icons and arrows as data: images (in its stylesheet and inline SVG);
# everything else still comes from this origin only.
DOCS_CSP = f"{CONTENT_SECURITY_POLICY}; img-src 'self' data:"

# On every response, page and API alike, unless the view set its own.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class _BoundedInput:
    """A request body without Content-Length, refused with 413 past `limit` bytes.

    werkzeug stops reading such a stream at MAX_CONTENT_LENGTH without looking
    further, so a longer body would pass cut short: this one reads one byte beyond.
    """

    def __init__(self, stream, limit: int):
        self._stream = stream
        self._left = limit

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        if self._left == 0 and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


@bp.before_app_request
def accept_chunked_body():
    """Let a body sent with `Transfer-Encoding: chunked` be read, up to MAX_CONTENT_LENGTH.

    Without a Content-Length, werkzeug reads an empty body unless the server says it
    ends the stream itself (`wsgi.input_terminated`): eventlet's server decodes chunked
    input and stops at the last chunk, but does not say so.
    """
    environ = request.environ
    stream = environ.get("wsgi.input")
    if not getattr(stream, "chunked_input", False):
        return
    limit = request.max_content_length
    if limit is not None:
        environ["wsgi.input"] = _BoundedInput(stream, limit)
    environ["wsgi.input_terminated"] = True


@bp.after_app_request
def add_security_headers(response):
    """Add SECURITY_HEADERS to every response, keeping any a view already set."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.get("/healthz")
def healthz():
    """Health: 200 `{"status": "ok"}` when the database answers, else 503 (the wire contract's).

    Readiness, which also checks Redis and the message-queue subscription, is /readyz.
    """
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("health check: the database does not answer")
        return error_response(503, "unavailable", "The database does not answer.")
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when the database answers and, with a message queue, Redis answers and the
    subscription is up; else 503 with the failing checks in `details`."""
    checks = readiness_checks(current_app)
    failing = {name: problem for name, problem in checks.items() if problem != READY}
    # Logged when it changes, not at every probe.
    if failing != current_app.extensions.get("readiness_failing", {}):
        current_app.extensions["readiness_failing"] = failing
        if failing:
            log.warning("not ready: %s", "; ".join(f"{name}: {problem}" for name, problem in failing.items()))
        else:
            log.info("ready again")
    if failing:
        return error_response(503, "unavailable", "Not ready to serve.", details=failing)
    return {"status": "ok", "checks": checks}


def readiness_checks(app: Flask) -> dict[str, str]:
    """Each dependency a request may need -> "ok" or what is wrong with it."""
    checks = {"database": READY}
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        checks["database"] = f"does not answer ({type(exc).__name__})"
    url = app.config["SOCKETIO_MESSAGE_QUEUE"]
    if url:
        client = app.extensions.get("readiness_redis")
        if client is None:
            client = app.extensions["readiness_redis"] = redis.Redis.from_url(
                url, socket_timeout=2, socket_connect_timeout=2
            )
        try:
            client.ping()
            checks["redis"] = READY
        except redis.RedisError as exc:
            checks["redis"] = f"does not answer ({type(exc).__name__})"
        listening = socketio.server.manager.listening  # the Redis manager (app/realtime/queue.py)
        checks["subscription"] = READY if listening else "not subscribed to the message queue"
    return checks


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of the REST API, built from the routes and schemas."""
    return build_spec(current_app)


@bp.get("/client/")
def client_index():
    """The browser client's page."""
    return client("index.html")


@bp.get("/client/<path:filename>")
def client(filename: str):
    """The browser client's files (CLIENT_FILES), the socket.io-client bundle among them."""
    return send_listed(CLIENT_FILES, filename)


@bp.get("/docs/")
def docs_index():
    """The API reference: /openapi.json rendered by Swagger UI, served from this origin."""
    return docs("index.html")


@bp.get("/docs/<path:filename>")
def docs(filename: str):
    """The API reference page's files (DOCS_FILES)."""
    response = send_listed(DOCS_FILES, filename)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def send_listed(files: dict[str, str], filename: str):
    """The file of PUBLIC_DIR that `files` maps `filename` to; 404 for any other name."""
    path = files.get(filename)
    if path is None:
        raise NotFound()
    return send_from_directory(current_app.config["PUBLIC_DIR"], path)
