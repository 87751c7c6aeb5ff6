"""Every correction this service makes to a library's internals, one module per library.

Each module names the exact library version its corrections were written for
(`WRITTEN_FOR`): the factory calls `apply`, which refuses to start when an installed
version differs (the corrections would reach into internals nobody has checked), then
installs them and logs which ones are in effect (`APPLIED_LOG`, read by a test of the
real server).
"""

from collections.abc import Callable
from importlib.metadata import version

from flask import Flask
from flask_jwt_extended import JWTManager
from socketio import Server

from app.realtime.patches import (
    engineio,
    engineio_websocket,
    eventlet,
    eventlet_websocket,
    flask_jwt_extended,
    flask_limiter,
    flask_socketio,
    limits,
    socketio,
    socketio_manager,
)

MODULES = (
    eventlet,
    eventlet_websocket,
    engineio,
    engineio_websocket,
    socketio,
    socketio_manager,
    flask_socketio,
    flask_jwt_extended,
    flask_limiter,
    limits,
)
# Log line that a test reads (tests/support/logs.py): the corrections in effect in this process.
APPLIED_LOG = "library corrections in effect: %s"


def check_versions() -> None:
    """Refuse to start when a corrected library is not the version its corrections were written for."""
    for module in MODULES:
        found = version(module.PACKAGE)
        if found != module.WRITTEN_FOR:
            raise RuntimeError(
                f"this service corrects the internals of {module.PACKAGE} {module.WRITTEN_FOR} and will not "
                f"run on {module.PACKAGE} {found}: install the versions requirements.txt pins"
            )


def apply(
    app: Flask, server: Server, jwt: JWTManager, allow_event: Callable[[str], bool] | None = None
) -> list[str]:
    """Check the versions, install every correction; the names of those in effect (the server logs
    them, `APPLIED_LOG`; commands stay quiet)."""
    check_versions()
    eventlet.apply(server, app.config["WEBSOCKET_COMPRESSION"], app.config["WEBSOCKET_COMPRESSION_THRESHOLD"])
    engineio.apply(server)
    engineio_websocket.apply(server)
    socketio.apply(server, allow_event)
    flask_socketio.apply(app)
    flask_jwt_extended.apply(jwt)
    flask_limiter.apply(app, app.extensions["rate_limits"].http)
    limits.apply()
    return in_effect(app, server, jwt)


def in_effect(app: Flask, server: Server, jwt: JWTManager) -> list[str]:
    """The names of the corrections installed in this app, its server and its JWT manager."""
    found = eventlet.in_effect(server) + engineio.in_effect(server) + engineio_websocket.in_effect(server)
    found += socketio.in_effect(server)
    found += socketio_manager.in_effect(server)
    found += (
        flask_socketio.in_effect(app)
        + flask_jwt_extended.in_effect(jwt)
        + flask_limiter.in_effect(app, app.extensions["rate_limits"].http)
    )
    return found + limits.in_effect()
