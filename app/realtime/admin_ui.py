"""Live inspection through the Socket.IO Admin UI: python-socketio's `instrument`, off unless configured.

Set ADMIN_UI_PASSWORD (and ADMIN_UI_USERNAME, "admin" by default) and the server
instruments its Socket.IO server: a `/admin` namespace that only those credentials may
join, which the Admin UI page (served at /admin-ui/ from its npm package, see
app/api/ops.py) connects to. Read-only unless ADMIN_UI_READ_ONLY=0, which lets the UI
disconnect sockets and move them between rooms.

In `development` mode (ADMIN_UI_MODE, the default) the UI lists every socket and
every event, because the server reports each connect, emit and room change to the
`/admin` namespace (with several processes, through the message queue): that costs
on every hot path while it is on. `production` mode reports counts only.
"""

import hmac
import logging

from flask import Flask

from app.extensions import socketio
from app.realtime.patches.socketio import report_refused_connects

log = logging.getLogger(__name__)

ADMIN_NAMESPACE = "/admin"
MODES = ("development", "production")
# What the UI may show of a socket's handshake: never its credentials.
HIDDEN_HEADERS = frozenset({"authorization", "cookie"})
MIN_PRODUCTION_PASSWORD = 16


class Credentials:
    """The Admin UI's login, compared in constant time (python-socketio would compare dicts with ==)."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()

    def __call__(self, auth) -> bool:
        if not isinstance(auth, dict):
            return False
        username, password = auth.get("username"), auth.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        # Both compared, whatever the first gives, so the time tells nothing about either.
        same_user = hmac.compare_digest(username.encode(), self._username)
        same_password = hmac.compare_digest(password.encode(), self._password)
        return same_user and same_password


def init_admin_ui(app: Flask) -> None:
    """Instrument the Socket.IO server for the Admin UI when ADMIN_UI_PASSWORD is set.

    Called before the socket guards (app/__init__.py): `instrument` replaces the
    Engine.IO connect handler, which the connect deadline then wraps.
    """
    password = app.config["ADMIN_UI_PASSWORD"]
    if not password:
        return
    mode = app.config["ADMIN_UI_MODE"]
    if mode not in MODES:
        raise RuntimeError(f"ADMIN_UI_MODE must be one of {MODES}, got {mode!r}")
    if app.config["ENV_NAME"] == "production" and len(password) < MIN_PRODUCTION_PASSWORD:
        raise RuntimeError(
            f"ADMIN_UI_PASSWORD must be at least {MIN_PRODUCTION_PASSWORD} characters in production"
        )
    instrumented = socketio.server.instrument(
        auth=Credentials(app.config["ADMIN_UI_USERNAME"], password),
        mode=mode,
        read_only=app.config["ADMIN_UI_READ_ONLY"],
        namespace=ADMIN_NAMESPACE,
    )
    serialize = instrumented.serialize_socket

    def serialize_without_credentials(*args, **kwargs) -> dict:
        described = serialize(*args, **kwargs)
        headers = described["handshake"]["headers"]
        for name in HIDDEN_HEADERS.intersection(headers):
            headers[name] = "(hidden)"
        return described

    instrumented.serialize_socket = serialize_without_credentials
    if mode == "development":
        report_refused_connects(socketio.server, ADMIN_NAMESPACE)
    app.extensions["admin_ui"] = instrumented
    log.info(
        "Socket.IO Admin UI enabled: namespace %s, %s mode, %s",
        ADMIN_NAMESPACE,
        mode,
        "read-only" if app.config["ADMIN_UI_READ_ONLY"] else "read-write",
    )
