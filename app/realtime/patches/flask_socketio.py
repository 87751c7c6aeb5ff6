"""Corrections to Flask-SocketIO (5.7.0): a handler's request context is built without matching
its URL, and a URL rule for the Socket.IO path where one is still matched."""

from flask import Flask
from werkzeug.exceptions import NotFound

PACKAGE = "Flask-SocketIO"
WRITTEN_FOR = "5.7.0"

SOCKETIO_PATH = "/socket.io/"
PATH_RULE = "flask_socketio: a URL rule for the Socket.IO path"
NO_URL_MATCH = "flask_socketio: handler contexts built without matching the URL"
ENDPOINTS = (("socketio_polling", False), ("socketio_websocket", True))


def apply(app: Flask) -> None:
    """Both corrections (below)."""
    _add_path_rules(app)
    _no_url_adapter_for_handlers(app)


def _add_path_rules(app: Flask) -> None:
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


def _no_url_adapter_for_handlers(app: Flask) -> None:
    """No URL adapter for a request under /socket.io/: there is no view to match there.

    Flask bound a URL adapter to each handler's request and matched its path against the
    app's rules: 5 % of the server's busy time while clients connect. Requests under the
    path never reach a Flask view (the Engine.IO middleware takes every one), so only
    handler contexts go without an adapter, and no handler builds a URL. (Flask-SocketIO's
    test client connects as /socket.io, without the slash: its contexts still match the
    rule above.)
    """
    original = app.create_url_adapter
    if getattr(original, "skips_socketio", False):
        return

    def create_url_adapter(request):
        if request is not None and request.environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH):
            return None
        return original(request)

    create_url_adapter.skips_socketio = True
    app.create_url_adapter = create_url_adapter


def in_effect(app: Flask) -> list[str]:
    """The names of this module's corrections in effect for `app`."""
    found = [PATH_RULE] if all(endpoint in app.view_functions for endpoint, _ in ENDPOINTS) else []
    return found + ([NO_URL_MATCH] if getattr(app.create_url_adapter, "skips_socketio", False) else [])


def _not_served_by_flask():
    raise NotFound()
