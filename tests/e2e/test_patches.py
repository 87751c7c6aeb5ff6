"""The library corrections of app/realtime/patches/ are in effect in the server of `python wsgi.py`."""

from app.realtime import patches
from tests.support.logs import CORRECTIONS_IN_EFFECT

# Every correction that applies to the default server (one process, no Admin UI).
EXPECTED = {
    patches.eventlet.SMALL_READ_BUFFERS,
    patches.eventlet.REQUEST_DEADLINES,
    patches.eventlet.RELEASED_HTTP_STATE,
    patches.eventlet.PLAIN_HEADERS,
    patches.engineio.MALFORMED_PACKETS,
    patches.engineio.CLOSE_WITHOUT_WAITING,
    patches.engineio.PING_SCHEDULER,
    patches.engineio_websocket.WRITER_ON_DEMAND,
    patches.eventlet_websocket.HUB_READER,
    patches.eventlet.COMPRESSION,
    patches.socketio.RESERVED_EVENTS,
    patches.socketio.CONNECT_FIRST,
    patches.socketio.CONNECT_THREAD,
    patches.socketio.TRIMMED_ENVIRONS,
    patches.socketio_manager.INDEXED_ROOMS,
    patches.flask_socketio.PATH_RULE,
    patches.flask_socketio.NO_URL_MATCH,
    patches.flask_jwt_extended.SINGLE_DECODE,
    patches.flask_jwt_extended.TOKEN_CACHE,
    patches.flask_jwt_extended.HEADER_ONCE,
    patches.flask_limiter.STATE_ONLY_WHEN_USED,
    patches.flask_limiter.RESOLVED_ONCE,
    patches.limits.SWEEP_EVERY_SECOND,
}


def test_the_server_reports_every_library_correction_in_effect(live_server):
    prefix = CORRECTIONS_IN_EFFECT.removesuffix("%s")
    [names] = [line.split(prefix, 1)[1] for line in live_server.log().splitlines() if prefix in line]
    assert set(names.split(", ")) == EXPECTED
