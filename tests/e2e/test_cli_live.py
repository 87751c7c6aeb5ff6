"""End-to-end tests of the `flask` commands against a running server (and without one)."""

from datetime import UTC, datetime

import jwt

from tests.support.clients import connect
from tests.support.logs import NO_SERVER_ANSWERS, logged
from tests.support.waiting import wait_for


def rows_by_user(server):
    return dict(server.rows("SELECT user_id, status FROM notifications"))


def test_send_notification_reaches_a_connected_user_live(live_server, socket_client):
    alice = connect(socket_client(), live_server, "alice")

    result = live_server.cli("send-notification", "--user", "alice", "--user", "bob", "hi")

    assert result.stdout.strip() == "created 2, delivered live 1, pending 1"
    wait_for(lambda: alice.new_notifications, message="the notification on alice's socket")
    [event] = alice.new_notifications
    assert (event["userId"], event["message"], event["status"]) == ("alice", "hi", "DELIVERED")
    assert rows_by_user(live_server) == {"alice": "DELIVERED", "bob": "PENDING"}
    assert alice.pending_batches == []


def test_send_notification_without_a_server_is_delivered_on_next_connect(live_server, socket_client):
    live_server.stop()

    result = live_server.cli("send-notification", "--user", "carol", "stored while down")

    assert result.stdout.strip() == "created 1, delivered live 0, pending 1"
    assert logged(result.stderr, NO_SERVER_ANSWERS)
    assert rows_by_user(live_server) == {"carol": "PENDING"}

    live_server.start()
    carol = connect(socket_client(), live_server, "carol")
    wait_for(lambda: carol.pending_batches, message="the pending notification on carol's socket")
    [[notification]] = carol.pending_batches
    assert (notification["userId"], notification["message"]) == ("carol", "stored while down")
    assert rows_by_user(live_server) == {"carol": "DELIVERED"}


def test_create_token_prints_a_valid_admin_token(live_server):
    result = live_server.cli("create-token", "alice", "--admin")

    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    claims = jwt.decode(lines[0], live_server.secret, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["role"] == "admin"
    assert datetime.fromtimestamp(claims["exp"], UTC) > datetime.now(UTC)

    response = live_server.admin_post(["bob"], "sent with a CLI token", token=lines[0])
    assert response.status_code == 201, response.text


def test_send_notification_rejects_invalid_input_and_stores_nothing(live_server):
    cases = {
        "empty message": (["--user", "alice", ""], "message"),
        "blank message": (["--user", "alice", "   "], "message"),
        "no --user": (["hi"], "--user"),
    }
    for name, (args, mentioned) in cases.items():
        result = live_server.cli("send-notification", *args, check=False)
        assert result.returncode != 0, f"{name}: accepted ({result.stdout!r})"
        assert mentioned in result.stderr, f"{name}: unclear error {result.stderr!r}"
        assert "Traceback" not in result.stderr, f"{name}: crashed\n{result.stderr}"
    assert live_server.rows("SELECT count(*) FROM notifications") == [(0,)]
