"""Socket.IO handlers: authenticate on connect, hand over to the service layer."""

import logging

from flask import Flask, current_app, request
from flask_socketio import ConnectionRefusedError
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.auth import AuthError, Identity, socket_identity
from app.errors import TooManySocketsError
from app.extensions import socketio
from app.protocol import NAMESPACE, REFRESH_TOKEN
from app.realtime.deadlines import RefreshRefused
from app.services import delivery

log = logging.getLogger(__name__)


def on_connect(auth=None):
    """A client connects with a token (header or `auth` payload).

    Refused with `connect_error` when the token is missing or invalid, or the client
    is over a rate limit; otherwise the socket joins its user's room, gets the user's
    pending notifications, and is closed when its token expires (unless refreshed).
    `auth={"ack": true}` makes it an acknowledging client (see app/delivery/confirmations.py).
    """
    address = request.remote_addr or "unknown"
    identity = _authenticated(auth, address)
    _within_connect_rate(identity.user_id, address)
    acknowledging = isinstance(auth, dict) and auth.get("ack") is True
    try:
        delivery.current().connect(identity.user_id, request.sid, acknowledging)
    except TooManySocketsError as exc:
        log.warning(
            "socket connection of user %s refused: %s",
            identity.user_id,
            exc,
            extra={"user_id": identity.user_id},
        )
        metrics.REFUSED.labels(metrics.REFUSED_TOO_MANY_SOCKETS).inc()
        raise ConnectionRefusedError(str(exc)) from None
    except SQLAlchemyError:
        log.exception(
            "socket connection of user %s refused: database error",
            identity.user_id,
            extra={"user_id": identity.user_id},
        )
        metrics.REFUSED.labels(metrics.REFUSED_DATABASE).inc()
        raise ConnectionRefusedError("server busy, try again") from None
    current_app.extensions["token_expiry"].track(request.sid, identity)
    metrics.CONNECTS.inc()


def _authenticated(auth, address: str) -> Identity:
    """The identity of the connecting client's token; ConnectionRefusedError without a valid one."""
    try:
        return socket_identity(request.headers.get("Authorization"), auth)
    except AuthError as exc:
        # A valid token is never refused for others' failures: only failing connects count.
        wait = current_app.extensions["rate_limits"].auth_failed(address)
        if wait:
            metrics.REFUSED.labels(metrics.REFUSED_AUTH_BLOCKED).inc()
            raise ConnectionRefusedError(f"too many failed authentications; retry in {wait:.0f} s") from None
        log.info("socket connection refused: %s", exc, extra={"address": address})
        metrics.REFUSED.labels(metrics.REFUSED_UNAUTHORIZED).inc()
        raise ConnectionRefusedError(f"unauthorized: {exc}") from None


def _within_connect_rate(user_id: str, address: str) -> None:
    """ConnectionRefusedError when the user connects too often."""
    wait = current_app.extensions["rate_limits"].socket_connect(user_id)
    if wait:
        log.warning(
            "socket connection of user %s refused: over the connect rate limit",
            user_id,
            extra={"user_id": user_id, "address": address},
        )
        metrics.REFUSED.labels(metrics.REFUSED_RATE_LIMITED).inc()
        raise ConnectionRefusedError(f"too many connections in a short time; retry in {wait:.0f} s")


def on_disconnect(reason=None):
    """A client's socket closed: it no longer counts towards its user's presence."""
    current_app.extensions["token_expiry"].forget(request.sid)
    delivery.current().disconnect(request.sid)
    # The Engine.IO session may stay open (a client that left the namespace only):
    # it gets the connect deadline again.
    eio_sid = socketio.server.manager.eio_sid_from_sid(request.sid, NAMESPACE)
    if eio_sid is not None:
        current_app.extensions["connect_deadline"].start(eio_sid)


def on_refresh_token(payload=None):
    """The client sends a fresh token for its user: `"<token>"` or `{"token": "<token>"}`.

    The acknowledgement answers `{"ok": true, "exp": <unix time>}`, and the socket
    then stays open until that time; or `{"ok": false, "error": <code>, "message": ...}`,
    and nothing changes.
    """
    token = payload.get("token") if isinstance(payload, dict) else payload
    try:
        expires_at = current_app.extensions["token_expiry"].refresh(request.sid, token)
    except RefreshRefused as exc:
        log.info("token refresh of socket %s refused: %s", request.sid, exc, extra={"sid": request.sid})
        return {"ok": False, "error": exc.code, "message": str(exc)}
    return {"ok": True, "exp": int(expires_at)}


def on_error(exc: Exception):
    """An event handler failed: log it; the connection stays up."""
    log.exception("socket event failed: %s", exc)


def register_events(app: Flask) -> None:
    """Attach the handlers to the Socket.IO server (called by the factory)."""
    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
    socketio.on_event(REFRESH_TOKEN, on_refresh_token)
    socketio.on_error_default(on_error)
