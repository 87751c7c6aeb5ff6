"""The real server refuses sockets with a missing or bad token, and they count for nothing."""

import socketio

from tests.support.clients import connect
from tests.support.tokens import forged_tokens
from tests.support.waiting import wait_for

BAD_TOKENS = ["missing", "garbage", "expired", "wrong key", "alg none"]


def _bad_token(kind, server):
    return None if kind == "missing" else forged_tokens(server.secret, "mallory")[kind]


def test_connections_with_bad_tokens_are_refused(live_server, socket_client):
    [waiting] = live_server.send(["mallory"], "not for an impostor")

    problems = []
    for kind in BAD_TOKENS:
        for via in ("header", "auth"):
            client = socket_client()
            try:
                connect(client, live_server, via=via, token=_bad_token(kind, live_server))
            except socketio.exceptions.ConnectionError:
                pass
            else:
                problems.append(f"{kind} token in {via}: connected")
            if not client.connect_errors:
                problems.append(f"{kind} token in {via}: no connect_error")
            if client.notifications():
                problems.append(f"{kind} token in {via}: got {client.events}")
    assert problems == []

    assert live_server.statuses([waiting["id"]]) == {waiting["id"]: "PENDING"}
    assert live_server.healthz().status_code == 200
    [later] = live_server.send(["mallory"], "still offline")
    assert later["status"] == "PENDING", "a refused socket counts its user as online"
    mallory = connect(socket_client(), live_server, "mallory")
    wait_for(lambda: mallory.pending_batches, message="the pending notifications of mallory")
    assert mallory.notification_ids() == [waiting["id"], later["id"]]
