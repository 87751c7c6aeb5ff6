"""What an operator uses, on the real server: /metrics, /healthz, /readyz, JSON logs, the Admin UI."""

import json

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import CONNECT_TIMEOUT, connect
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.logs import USER_CONNECTED, logged
from tests.support.tokens import bearer
from tests.support.waiting import wait_for

ADMIN_PASSWORD = "an-admin-ui-password-for-tests"


def samples(server, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """The server's /metrics, parsed by prometheus_client: (sample name, sorted labels) -> value."""
    headers = bearer(token) if token else {}
    response = requests.get(server.url + "/metrics", headers=headers, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def gained(before: dict, after: dict, name: str, **labels) -> float:
    key = ("notifications_" + name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_change_when_a_notification_is_created_and_acknowledged(live_server, socket_client):
    before = samples(live_server)
    client = connect(socket_client(user_id="alice"), live_server, "alice", ack=True)

    [note] = live_server.send(["alice"], "measured")
    client.wait_received(note["id"])

    def acknowledged() -> dict:
        after = samples(live_server)
        return after if gained(before, after, "acknowledged_total") == 1 else {}

    after = wait_for(acknowledged, message="the acknowledgement to be counted")
    assert gained(before, after, "created_total", status="DELIVERED") == 1
    assert gained(before, after, "sent_total", kind="live") == 1
    assert gained(before, after, "socket_connects_total") == 1
    assert gained(before, after, "delivery_latency_seconds_count", kind="live") == 1
    assert 0 < gained(before, after, "delivery_latency_seconds_sum", kind="live") < 10
    assert after[("notifications_sockets_connected", ())] == 1
    assert after[("notifications_users_online", ())] == 1
    route = (("method", "POST"), ("route", "/v1/admin/notifications"), ("status", "201"))
    assert after[("notifications_http_request_duration_seconds_count", route)] >= 1


@pytest.mark.server_env(METRICS_TOKEN="a-scrape-token")
def test_metrics_need_the_token_when_one_is_set(live_server):
    assert requests.get(live_server.url + "/metrics", timeout=HTTP_TIMEOUT).status_code == 401
    assert ("notifications_socket_connects_total", ()) in samples(live_server, "a-scrape-token")


def test_healthz_and_readyz_answer(live_server):
    assert live_server.healthz().json() == {"status": "ok"}
    ready = requests.get(live_server.url + "/readyz", timeout=HTTP_TIMEOUT)
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checks": {"database": "ok"}})


@pytest.mark.server_env(LOG_FORMAT="json")
def test_json_logs_are_one_object_per_line_with_fields(live_server, socket_client):
    client = connect(socket_client(user_id="bob"), live_server, "bob")
    live_server.send(["bob", "carol"], "logged")
    wait_for(lambda: logged(live_server.log(), USER_CONNECTED, "bob"), message="bob's connect line")
    client.close()

    lines = [json.loads(line) for line in live_server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines), lines
    assert {line["pid"] for line in lines} == {live_server.pid}
    connected = next(line for line in lines if line.get("user_id") == "bob" and "sid" in line)
    assert connected["logger"] == "app.services.delivery" and connected["level"] == "INFO"
    [created] = [line for line in lines if "sender" in line]
    assert (created["sender"], created["notification_count"]) == ("admin", 2)


def test_the_admin_ui_is_off_by_default(live_server):
    assert requests.get(live_server.url + "/admin-ui/", timeout=HTTP_TIMEOUT).status_code == 404
    with pytest.raises(socketio.exceptions.ConnectionError):
        admin_client(live_server, "admin", ADMIN_PASSWORD)


def admin_client(server, username: str, password: str) -> socketio.Client:
    """A client of the Admin UI's namespace; closed at once when the connect raises."""
    client = socketio.Client(reconnection=False)
    got: dict[str, list] = {}
    client.on("*", lambda event, *args: got.setdefault(event, []).append(args), namespace="/admin")
    client.received = got
    try:
        client.connect(
            server.url,
            namespaces=["/admin"],
            auth={"username": username, "password": password},
            transports=["websocket"],
            wait_timeout=CONNECT_TIMEOUT,
        )
    except socketio.exceptions.ConnectionError:
        client.disconnect()
        raise
    return client


@pytest.mark.server_env(ADMIN_UI_PASSWORD=ADMIN_PASSWORD)
def test_the_admin_ui_namespace_refuses_a_wrong_password_and_hides_tokens(live_server, socket_client):
    for username, password in (("admin", "wrong"), ("root", ADMIN_PASSWORD), ("admin", "")):
        with pytest.raises(socketio.exceptions.ConnectionError):
            admin_client(live_server, username, password)

    token = live_server.token("dave")
    user = socket_client(user_id="dave").open(live_server.url, token)
    admin = admin_client(live_server, "admin", ADMIN_PASSWORD)
    try:
        sockets = wait_for(lambda: admin.received.get("all_sockets"), message="the Admin UI's socket list")
        [dave] = [s for s in sockets[0][0] if s["nsp"] == "/"]
        assert dave["handshake"]["headers"]["authorization"] == "(hidden)"
        assert token not in json.dumps(sockets)
        refused = socket_client(user_id="mallory")
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.open(live_server.url, "not-a-token")
        # Reported when it connected, before the connect handler refused it; then reported gone.
        shown = wait_for(
            lambda: [
                args[0]["id"] for args in admin.received.get("socket_connected", []) if args[0]["nsp"] == "/"
            ],
            message="the Admin UI to be told of the refused socket",
        )
        gone = wait_for(lambda: admin.received.get("socket_disconnected"), message="and of its refusal")
        assert [args[:3] for args in gone] == [("/", shown[0], "connection refused")]
        page = requests.get(live_server.url + "/admin-ui/", timeout=HTTP_TIMEOUT)
        assert page.status_code == 200 and "https://" not in page.text
        assert "'unsafe-inline'" in page.headers["Content-Security-Policy"]
    finally:
        admin.disconnect()
        user.close()
