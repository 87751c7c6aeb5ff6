"""The corrections of app/realtime/patches/engineio.py, on the app's own Engine.IO server."""

import threading

import pytest
from werkzeug.test import EnvironBuilder

from app.extensions import socketio

ANSWER_TIMEOUT = 5  # seconds; without the correction the request is never answered


def _request(method: str, query: str, body: bytes = b"", announced: int | None = None):
    """Run one Engine.IO polling request in a thread; (status, body), or None if unanswered."""
    environ = EnvironBuilder(path="/socket.io/", method=method, query_string=query, data=body).get_environ()
    if announced is not None:
        environ["CONTENT_LENGTH"] = str(announced)
    result = []

    def run():
        status = []
        chunks = socketio.server.eio.handle_request(environ, lambda s, _h: status.append(s))
        result.append((status[0], b"".join(chunks)))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(ANSWER_TIMEOUT)
    return result[0] if result else None


def _handshake() -> str:
    status, body = _request("GET", "EIO=4&transport=polling")
    assert status.startswith("200"), body
    return body.decode().split('"sid":"')[1].split('"')[0]


@pytest.mark.parametrize(
    ("body", "announced"),
    [
        (b"6", None),  # a NOOP packet, which only the server may send
        (b"2", None),  # a PING packet, which only the server may send in Engine.IO 4
        (b"", 2_000_000),  # over the buffer limit, announced only
    ],
    ids=["noop", "ping", "oversize"],
)
def test_polling_post_that_breaks_the_protocol_is_answered_and_ends_the_session(app, body, announced):
    sid = _handshake()
    answer = _request("POST", f"EIO=4&transport=polling&sid={sid}", body, announced)
    assert answer is not None, "the POST was never answered"
    assert answer[0].startswith("400"), answer
    assert sid not in socketio.server.eio.sockets


def test_server_side_close_of_an_idle_polling_session_returns_at_once(app):
    sid = _handshake()
    closer = threading.Thread(target=socketio.server.eio.disconnect, args=(sid,), daemon=True)
    closer.start()
    closer.join(ANSWER_TIMEOUT)
    assert not closer.is_alive(), "disconnect() waited for a poll that never came"
    assert sid not in socketio.server.eio.sockets
