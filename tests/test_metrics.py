"""Prometheus metrics (app/metrics.py, GET /metrics) through the in-process app and test clients.

Metrics live in prometheus_client's process-wide registry, shared by every app a test
run builds: each test reads a value before and after, and asserts on the difference.
"""

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.extensions import db, socketio

NS = "notifications_"


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(NS + name, labels) or 0.0


class Gains:
    """What each of the samples, given as (name, labels), gained since this object was made."""

    def __init__(self, *samples: tuple[str, dict]):
        self._samples = samples
        self._before = self._read()

    def _read(self) -> list[float]:
        return [value(name, **labels) for name, labels in self._samples]

    def __call__(self) -> list[float]:
        return [after - before for after, before in zip(self._read(), self._before, strict=True)]


def scrape(client, headers=None) -> dict[str, dict]:
    """GET /metrics, parsed with prometheus_client's own parser: family name -> family."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {family.name: family for family in text_string_to_metric_families(response.get_data(as_text=True))}


def ack_client(app, token, user_id: str):
    sc = socketio.test_client(app, auth={"token": token(user_id), "ack": True})
    assert sc.is_connected()
    return sc


def answer_acks(sc) -> int:
    """Answer every acknowledgement request the server sent `sc`'s socket, as its client would."""
    manager = socketio.server.manager
    sid = manager.sid_from_eio_sid(sc.eio_sid, "/")
    pending = [ack_id for ack_id, callback in manager.callbacks.get(sid, {}).items() if callable(callback)]
    for ack_id in pending:
        manager.trigger_callback(sid, ack_id, [])
    return len(pending)


def test_metrics_are_the_prometheus_text_format_with_the_process_collectors(client):
    families = scrape(client)
    for name in (
        "notifications_sockets_connected",
        "notifications_users_online",
        "notifications_created",
        "notifications_delivery_latency_seconds",
        "notifications_http_request_duration_seconds",
        "process_cpu_seconds",
    ):
        assert name in families, sorted(families)


@pytest.mark.config(METRICS_TOKEN="scrape-me")
def test_metrics_answer_only_the_bearer_of_the_token_when_one_is_set(client, auth_header):
    for headers in ({}, {"Authorization": "Bearer wrong"}, auth_header("ops", admin=True)):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "notifications_created" in scrape(client, {"Authorization": "Bearer scrape-me"})


def test_a_notification_created_sent_and_acknowledged_moves_its_counters(app, token, admin_post):
    sc = ack_client(app, token, "alice")
    gains = Gains(
        ("created_total", {"status": "DELIVERED"}),
        ("created_total", {"status": "PENDING"}),
        ("sent_total", {"kind": "live"}),
        ("acknowledged_total", {}),
        ("delivery_latency_seconds_count", {"kind": "live"}),
    )
    assert admin_post(["alice", "bob"]).status_code == 201
    assert answer_acks(sc) == 1
    assert gains() == [1, 1, 1, 1, 1]
    sc.disconnect()


def test_pending_sends_and_their_acknowledgements_are_counted_apart(app, token, admin_post):
    admin_post(["carol"], "while away")
    gains = Gains(
        ("sent_total", {"kind": "pending"}), ("delivery_latency_seconds_count", {"kind": "pending"})
    )
    sc = ack_client(app, token, "carol")
    assert answer_acks(sc) == 1
    assert gains() == [1, 1]
    sc.disconnect()


def test_a_socket_closed_with_unacknowledged_sends_requeues_and_resends_them(app, token, admin_post):
    first = ack_client(app, token, "dave")
    admin_post(["dave"])
    second = ack_client(app, token, "dave")  # connected after the send: never got it
    gains = Gains(
        ("requeued_total", {"cause": "socket_closed"}), ("resent_total", {"cause": "socket_closed"})
    )
    first.disconnect()
    assert gains() == [1, 1]
    second.disconnect()


@pytest.mark.config(DELIVERY_CONFIRM_TIMEOUT=0)
def test_the_sweeper_counts_what_it_requeued(app, token, admin_post):
    from app.services import delivery

    sc = ack_client(app, token, "erin")
    admin_post(["erin"])
    gains = Gains(("requeued_total", {"cause": "unconfirmed"}))
    with app.app_context():
        delivery.current().sweeper.sweep()
    assert gains() == [1]
    sc.disconnect()


def test_connects_are_counted_and_refusals_by_reason(app, token, socket_client):
    gains = Gains(
        ("socket_connects_total", {}), ("socket_connects_refused_total", {"reason": "unauthorized"})
    )
    assert socket_client("frank").is_connected()
    assert not socket_client(raw_token="not-a-token").is_connected()
    assert gains() == [1, 1]


def test_gauges_count_this_process_sockets_and_users(client, socket_client):
    for user_id in ("gina", "gina", "hank"):
        socket_client(user_id)
    families = scrape(client)
    assert families["notifications_sockets_connected"].samples[0].value == 3
    assert families["notifications_users_online"].samples[0].value == 2


def test_http_requests_are_timed_by_route_and_status(client, auth_header):
    timed = "http_request_duration_seconds_count"
    gains = Gains(
        (timed, {"method": "GET", "route": "/v1/notifications", "status": "200"}),
        (timed, {"method": "GET", "route": "unmatched", "status": "404"}),
    )
    client.get("/v1/notifications", headers=auth_header("ivy"))
    client.get("/no/such/route/42")
    assert gains() == [1, 1]


def test_database_errors_are_counted(app):
    gains = Gains(("database_errors_total", {}))
    with app.app_context():
        with pytest.raises(DBAPIError):  # OperationalError on SQLite, ProgrammingError on PostgreSQL
            db.session.execute(text("SELECT * FROM no_such_table"))
        db.session.rollback()
    assert gains() == [1]
