"""The library corrections of app/realtime/patches/ are in effect in the server of `python wsgi.py`."""

from app.realtime.patches import (
    engineio,
    eventlet,
    flask_jwt_extended,
    flask_socketio,
    socketio,
    socketio_manager,
)
from tests.support.logs import CORRECTIONS_IN_EFFECT

# Every correction that applies to the default server (one process, no Admin UI).
EXPECTED = {
    eventlet.SMALL_READ_BUFFERS,
    eventlet.REQUEST_DEADLINES,
    engineio.MALFORMED_PACKETS,
    engineio.CLOSE_WITHOUT_WAITING,
    engineio.PING_SCHEDULER,
    eventlet.COMPRESSION,
    socketio.RESERVED_EVENTS,
    socketio.CONNECT_FIRST,
    socketio.TRIMMED_ENVIRONS,
    socketio_manager.INDEXED_ROOMS,
    flask_socketio.PATH_RULE,
    flask_jwt_extended.TOKEN_CACHE,
}


def test_the_server_reports_every_library_correction_in_effect(live_server):
    prefix = CORRECTIONS_IN_EFFECT.removesuffix("%s")
    [names] = [line.split(prefix, 1)[1] for line in live_server.log().splitlines() if prefix in line]
    assert set(names.split(", ")) == EXPECTED
