"""The corrections of app/realtime/patches/: start-up refuses library versions they were not written
for, and each one keeps the behaviour it replaces."""

import http.client
import io

import pytest
from flask_limiter._manager import LimitManager

from app import create_app
from app.realtime import patches
from app.realtime.patches import engineio
from app.realtime.patches import eventlet as eventlet_corrections
from config import TestingConfig


def test_a_library_version_other_than_the_one_corrected_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setattr(engineio, "WRITTEN_FOR", "4.14.0")
    with pytest.raises(RuntimeError) as refused:
        create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}")
    message = str(refused.value)
    assert "will not run on python-engineio 4.15.1" in message
    assert "internals of python-engineio 4.14.0" in message


def test_every_corrected_library_is_the_version_its_corrections_name():
    patches.check_versions()


def test_rate_limit_counters_expire_when_read_and_are_swept_a_second_after_a_hit():
    import time

    from limits.storage.memory import MemoryStorage

    from app.realtime.patches import limits

    limits.apply()
    storage = MemoryStorage()
    time.sleep(0.05)  # the timer the storage starts with has run
    storage.incr("expires", expiry=0.1)
    storage.incr("stays", expiry=60)
    assert storage.timer.interval == limits.SWEEP_SECONDS  # not 10 ms after the hit
    time.sleep(0.15)
    assert "expires" in storage.storage  # not swept yet...
    assert storage.get("expires") == 0 and storage.get("stays") == 1  # ...but a read sees it expired
    storage.incr("expires-later", expiry=0.1)
    time.sleep(limits.SWEEP_SECONDS + 0.3)
    assert "expires-later" not in storage.storage and storage.get("stays") == 1


def test_a_socket_handler_context_matches_no_url_and_http_routes_still_do(app, client):
    from flask import request
    from werkzeug.test import EnvironBuilder

    handler = EnvironBuilder(path="/socket.io/", query_string="EIO=4&transport=websocket").get_environ()
    with app.request_context(handler):
        assert request.url_rule is None and request.routing_exception is None
        assert request.args["transport"] == "websocket"
    with app.test_request_context("/v1/notifications"):
        assert request.url_rule.rule == "/v1/notifications"
    # Paths Flask does see still get the JSON 404, with or without the slash rule's help.
    for path in ("/socket.io", "/socket.iox", "/nope"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.get_json()["error"] == "not_found", path


HEADER_BLOCKS = [
    b"Host: x\r\nAuthorization: Bearer a.b.c\r\nContent-Length: 2\r\n\r\n",
    b"Host: x\n\n",  # bare LF line ends
    b"\r\n",  # no header at all
    b"X-Blank:\r\nX-Spaces:   \t v  \r\nX-Colons: a:b::c\r\nX-Latin: caf\xe9\r\n\r\n",
    b"Dup: 1\r\nDup: 2\r\nUPPER-lower_9: ~!#$%&'*+.^`|\r\n\r\n",
    b"Folded: one\r\n  two\r\nNext: 3\r\n\r\n",  # an obsolete continuation line
    b"No colon here\r\nHost: x\r\n\r\n",
    b": empty name\r\nHost: x\r\n\r\n",
    b"Bad Name: x\r\nHost: x\r\n\r\n",
    b"Lone: a\rb\r\nHost: x\r\n\r\n",  # a CR the email parser takes as a line end
    b"From someone\r\nHost: x\r\n\r\n",
    b"Host: x\r\nTruncated: y\r\n",  # the connection ended before the blank line
    b"Na\xefve: x\r\n\r\n",  # a name byte outside ASCII
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_request_headers_parse_as_the_standard_library_parses_them(block):
    eventlet_corrections.plain_headers_parsed_directly()
    standard = http.client.parse_headers.original
    ours = http.client.parse_headers(io.BytesIO(block + b"body"), _class=eventlet_corrections.RequestHeaders)
    theirs = standard(io.BytesIO(block + b"body"), _class=eventlet_corrections.RequestHeaders)
    assert type(ours) is eventlet_corrections.RequestHeaders
    assert described(ours) == described(theirs)
    assert ours.items() == theirs.items() and ours.get_payload() == theirs.get_payload()


def described(message) -> dict:
    """A message's state, its defects by kind (each defect is an object of its own)."""
    state = dict(vars(message))
    state["defects"] = [(type(d), str(d)) for d in state["defects"]]
    return state


def test_request_header_limits_are_the_standard_ones():
    eventlet_corrections.plain_headers_parsed_directly()
    many = b"".join(b"X-%d: v\r\n" % i for i in range(http.client._MAXHEADERS + 1)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="got more than"):
        http.client.parse_headers(io.BytesIO(many), _class=eventlet_corrections.RequestHeaders)
    with pytest.raises(http.client.LineTooLong):
        http.client.parse_headers(
            io.BytesIO(b"X: " + b"v" * 70_000 + b"\r\n\r\n"), _class=eventlet_corrections.RequestHeaders
        )


def test_a_request_that_never_used_the_rate_limits_gets_no_limiter_state_and_one_that_did_is_reset(app):
    limiter = app.extensions["rate_limits"].http
    untouched = app.test_request_context("/socket.io/")
    untouched.push()
    untouched.pop()
    assert not hasattr(untouched, "_limiter_request_context")
    used = app.test_request_context("/v1/notifications")
    used.push()
    limiter.context.view_rate_limits.append("a limit")
    used.pop()
    assert used._limiter_request_context[limiter].view_rate_limits == []


def resolved(manager, app) -> list[tuple]:
    defaults, decorated = manager.resolve_limits(app, "notifications.create_notifications", "notifications")
    return [(str(limit.limit), limit.scope) for limit in defaults + decorated]


def test_an_endpoints_limits_resolve_as_upstream_and_a_limit_added_later_is_seen():
    app = create_app(TestingConfig, RATE_LIMIT_ADMIN="5/second", RATE_LIMIT_USER="7/second")
    limiter = app.extensions["rate_limits"].http
    manager = limiter.limit_manager
    assert manager.resolve_limits.once
    upstream = LimitManager.resolve_limits.__get__(manager)
    with app.test_request_context("/v1/admin/notifications", method="POST"):
        first = resolved(manager, app)
        assert first == [
            (str(limit.limit), limit.scope)
            for limit in sum(upstream(app, "notifications.create_notifications", "notifications"), [])
        ]
        assert {"5 per 1 second", "7 per 1 second"} <= {text for text, _scope in first}
        assert resolved(manager, app) == first
        limiter.shared_limit("3/second", scope="extra")(app.blueprints["notifications"])
        assert ("3 per 1 second", "extra") in resolved(manager, app)


def test_a_limit_given_as_a_callable_is_resolved_on_every_request():
    app = create_app(TestingConfig)
    limiter = app.extensions["rate_limits"].http
    manager = limiter.limit_manager
    current = ["2/second"]
    limiter.shared_limit(lambda: current[0], scope="moving")(app.blueprints["notifications"])
    with app.test_request_context("/v1/admin/notifications", method="POST"):
        assert ("2 per 1 second", "moving") in resolved(manager, app)
        current[0] = "9/second"
        assert ("9 per 1 second", "moving") in resolved(manager, app)
