"""The indexed room bookkeeping behaves like python-socketio's own."""

from unittest import mock

import socketio

from app.realtime.transport import TrackingManager


def run(manager) -> list:
    manager.set_server(mock.MagicMock())
    states = []
    for i in range(3):
        manager.basic_enter_room(f"s{i}", "/", None, eio_sid=f"e{i}")
        manager.basic_enter_room(f"s{i}", "/", f"s{i}")
        manager.basic_enter_room(f"s{i}", "/", "user:alice" if i < 2 else "user:bob")
    manager.basic_enter_room("s0", "/", "extra")
    states.append(sorted(manager.get_rooms("s0", "/"), key=str))
    manager.basic_leave_room("s0", "/", "extra")
    manager.basic_disconnect("s0", "/")
    states.append({room: dict(members) for room, members in manager.rooms["/"].items()})
    manager.basic_disconnect("s1", "/")
    manager.basic_disconnect("s2", "/")
    states.append(manager.rooms)
    return states


def test_indexed_rooms_match_python_socketio():
    assert run(TrackingManager()) == run(socketio.Manager())
