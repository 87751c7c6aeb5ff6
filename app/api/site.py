"""Site routes (health, OpenAPI, browser client) and app-wide HTTP hooks: security headers, chunked bodies."""

from flask import Blueprint, current_app, request, send_from_directory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from app.api.openapi import build_spec
from app.errors import error_response
from app.extensions import db

bp = Blueprint("site", __name__)

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

# On every response, page and API alike, unless the view set its own.
SECURITY_HEADERS = {
    # The page loads its script, style and Socket.IO connection from its own origin only
    # (`'self'` covers the same-origin ws:), and no other site may frame it.
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
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
    """200 `{"status": "ok"}` when the database answers, else 503."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        current_app.logger.exception("health check: the database does not answer")
        return error_response(503, "unavailable", "The database does not answer.")
    return {"status": "ok"}


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
    path = CLIENT_FILES.get(filename)
    if path is None:
        raise NotFound()
    return send_from_directory(current_app.config["PUBLIC_DIR"], path)
