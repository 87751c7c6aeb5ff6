"""Correction to Flask-SocketIO (5.7.0): a URL rule for the Socket.IO path, so that building
each handler's request context does not fail."""

from flask import Flask
from werkzeug.exceptions import NotFound

PACKAGE = "Flask-SocketIO"
WRITTEN_FOR = "5.7.0"

SOCKETIO_PATH = "/socket.io/"
PATH_RULE = "flask_socketio: a URL rule for the Socket.IO path"
ENDPOINTS = (("socketio_polling", False), ("socketio_websocket", True))


def apply(app: Flask) -> None:
    """Add the rules (one per transport: werkzeug matches websocket requests only against websocket rules).

    Upstream bug: each handler runs in a Flask request context built from the
    connection's request, whose path is /socket.io/; with no rule for that path, building
    the context raises a NotFound and keeps it with its traceback, a reference cycle per
    handler call left to the cyclic garbage collector (the upstream fix would build the
    context without matching the URL). A rule makes the match succeed. Requests to the
    path never reach Flask: the Engine.IO middleware answers them first.
    """
    for endpoint, websocket in ENDPOINTS:
        if endpoint in app.view_functions:
            continue
        app.add_url_rule(
            SOCKETIO_PATH,
            endpoint=endpoint,
            view_func=_not_served_by_flask,
            websocket=websocket,
            strict_slashes=False,  # /socket.io too (Flask-SocketIO's test client)
        )


def in_effect(app: Flask) -> list[str]:
    """The names of this module's corrections in effect for `app`."""
    return [PATH_RULE] if all(endpoint in app.view_functions for endpoint, _ in ENDPOINTS) else []


def _not_served_by_flask():
    raise NotFound()
