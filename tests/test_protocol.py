"""The browser client's copy of the protocol's event names matches app/protocol.py."""

import re
from pathlib import Path

from app import protocol

CLIENT_JS = Path(__file__).resolve().parents[1] / "public" / "client.js"
EVENTS_BLOCK = re.compile(r"const EVENTS = Object\.freeze\(\{(?P<body>.*?)\}\);", re.S)
ENTRY = re.compile(r'(?P<name>[A-Z_]+):\s*"(?P<value>[^"]+)"')
# socket.io-client's own lifecycle events (socket and manager) are not the protocol's.
LITERAL_EVENT = re.compile(r'(?<!\.io)\.(?:on|emit)\(\s*"(?!connect\b|disconnect\b|connect_error\b)([^"]+)"')
HANDLER = re.compile(r"\.on\(\s*EVENTS\.(?P<name>[A-Z_]+)\b")

# What the server sends to the page (each needs a handler there), and what the page sends.
SERVER_TO_CLIENT = {
    "NEW_NOTIFICATION",
    "PENDING_NOTIFICATIONS",
    "TOKEN_EXPIRED",
    "UNREAD_COUNT",
    "NOTIFICATION_UPDATED",
    "NOTIFICATION_DELETED",
    "NOTIFICATIONS_READ_ALL",
    "PREFERENCES_UPDATED",
}
CLIENT_TO_SERVER = {"REFRESH_TOKEN"}


def client_events() -> dict[str, str]:
    source = CLIENT_JS.read_text()
    block = EVENTS_BLOCK.search(source)
    assert block, "public/client.js has no `const EVENTS = Object.freeze({...})`"
    return {m["name"]: m["value"] for m in ENTRY.finditer(block["body"])}


def test_client_event_names_are_the_protocols():
    events = client_events()
    assert events, "no event names found in public/client.js"
    for name, value in events.items():
        assert getattr(protocol, name, None) == value, f"{name} is {value!r} in client.js"


def test_client_handles_every_event_the_server_sends_to_it():
    assert SERVER_TO_CLIENT | CLIENT_TO_SERVER <= set(client_events())
    handled = {m["name"] for m in HANDLER.finditer(CLIENT_JS.read_text())}
    assert SERVER_TO_CLIENT <= handled, f"no handler in client.js for {sorted(SERVER_TO_CLIENT - handled)}"


def test_client_names_no_event_outside_its_copy():
    assert LITERAL_EVENT.findall(CLIENT_JS.read_text()) == []
