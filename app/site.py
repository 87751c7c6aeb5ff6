"""Routes outside the API: health check, OpenAPI document, the browser client."""

from flask import Blueprint, current_app, send_from_directory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound

from app.errors import error_response
from app.extensions import db
from app.openapi import build_spec

bp = Blueprint("site", __name__)

SOCKETIO_BUNDLE = "node_modules/socket.io-client/dist"


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
    """The browser client's files, and the socket.io-client bundle installed by npm."""
    public = current_app.config["PUBLIC_DIR"]
    if filename.startswith("vendor/"):
        name = filename.removeprefix("vendor/")
        if name not in ("socket.io.min.js", "socket.io.min.js.map"):
            raise NotFound()
        return send_from_directory(public / SOCKETIO_BUNDLE, name)
    if filename.startswith("node_modules/") or filename in ("package.json", "package-lock.json"):
        raise NotFound()
    return send_from_directory(public, filename)
