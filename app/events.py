"""Socket.IO handlers: authenticate on connect, hand over to the service layer."""

import logging

from flask import request
from flask_socketio import ConnectionRefusedError
from sqlalchemy.exc import SQLAlchemyError

from app.auth import AuthError, socket_identity
from app.extensions import socketio
from app.services import notifications

log = logging.getLogger(__name__)


def on_connect(auth=None):
    """A client connects with a token (header or `auth` payload).

    Refused with `connect_error` when the token is missing or invalid; otherwise the
    socket joins its user's room and gets the user's pending notifications.
    """
    try:
        identity = socket_identity(request.headers.get("Authorization"), auth)
    except AuthError as exc:
        log.info("socket connection refused: %s", exc)
        raise ConnectionRefusedError(f"unauthorized: {exc}") from None
    try:
        notifications.connect_socket(identity.user_id, request.sid)
    except notifications.TooManySockets as exc:
        log.warning("socket connection of user %s refused: %s", identity.user_id, exc)
        raise ConnectionRefusedError(str(exc)) from None
    except SQLAlchemyError:
        log.exception("socket connection of user %s refused: database error", identity.user_id)
        raise ConnectionRefusedError("server busy, try again") from None


def on_disconnect(reason=None):
    """A client's socket closed: it no longer counts towards its user's presence."""
    notifications.disconnect_socket(request.sid)


def on_error(exc: Exception):
    """An event handler failed: log it; the connection stays up."""
    log.exception("socket event failed: %s", exc)


def register_events() -> None:
    """Attach the handlers to the Socket.IO server (called by the factory)."""
    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
    socketio.on_error_default(on_error)
