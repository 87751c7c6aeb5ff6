"""The `flask` commands, run in-process with no server listening."""

import jwt as pyjwt
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Notification
from tests.support.ports import free_port


@pytest.fixture
def no_server(app):
    app.config.update(HOST="127.0.0.1", PORT=free_port())


def test_create_token_prints_one_signed_token(runner, app):
    result = runner.invoke(args=["create-token", "alice", "--admin", "--expires-in", "120"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    claims = pyjwt.decode(lines[0], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 120


def test_create_token_without_admin_has_no_role(runner, app):
    token = runner.invoke(args=["create-token", "bob"]).output.strip()
    claims = pyjwt.decode(token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert "role" not in claims and claims["sub"] == "bob"


def test_send_notification_without_server_stores_pending(runner, app, no_server):
    result = runner.invoke(args=["send-notification", "--user", "a", "--user", "b", "--user", "a", "hello"])
    assert result.exit_code == 0, result.output
    assert "created 2, delivered live 0, pending 2" in result.output
    with app.app_context():
        rows = db.session.execute(
            select(Notification.user_id, Notification.status, Notification.message)
        ).all()
    assert sorted((r.user_id, r.status.value, r.message) for r in rows) == [
        ("a", "PENDING", "hello"),
        ("b", "PENDING", "hello"),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["send-notification", "hello"],
        ["send-notification", "--user", "a", ""],
        ["send-notification", "--user", "", "x"],
    ],
)
def test_send_notification_rejects_bad_input_and_stores_nothing(runner, app, no_server, args):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert "Error" in result.output
    with app.app_context():
        assert db.session.scalars(select(Notification)).all() == []


def test_topic_commands_add_list_and_remove_subscribers(runner):
    added = runner.invoke(args=["topic", "add", "deploys", "bob", "alice", "bob"])
    assert added.exit_code == 0 and added.output.strip() == "added 2 to deploys"
    assert runner.invoke(args=["topic", "add", "deploys", "alice"]).output.strip() == "added 0 to deploys"
    assert runner.invoke(args=["topic", "list", "deploys"]).output.split("\n")[:-1] == ["alice", "bob"]
    removed = runner.invoke(args=["topic", "remove", "deploys", "alice", "zed"])
    assert removed.exit_code == 0 and removed.output.strip() == "removed 1 from deploys"
    assert runner.invoke(args=["topic", "list", "deploys"]).output == "bob\n"
    assert runner.invoke(args=["topic", "list", "never-used"]).output == ""


@pytest.mark.parametrize(
    "args", [["add", "Bad Name", "alice"], ["add", "deploys"], ["list", "-x"], ["add", "ok", ""]]
)
def test_topic_commands_refuse_bad_input_and_store_nothing(runner, args):
    result = runner.invoke(args=["topic", *args])
    assert result.exit_code != 0
    assert runner.invoke(args=["topic", "list", "ok"]).output == ""


def test_send_notification_to_a_topic_with_a_category(runner, client, auth_header):
    runner.invoke(args=["topic", "add", "deploys", "alice", "bob"])
    client.put("/v1/preferences", json={"muted": ["releases"]}, headers=auth_header("bob"))
    result = runner.invoke(
        args=["send-notification", "--topic", "deploys", "--category", "releases", "v2 is out"]
    )
    assert result.exit_code == 0, result.output
    assert "topic deploys: recipients 2, delivered live 0, pending 1, skipped 1" in result.output
    [stored] = client.get("/v1/notifications", headers=auth_header("alice")).get_json()
    assert (stored["topic"], stored["category"], stored["message"]) == ("deploys", "releases", "v2 is out")


def test_send_notification_with_a_category_says_who_was_skipped(runner, client, auth_header):
    client.put("/v1/preferences", json={"muted": ["digest"]}, headers=auth_header("bob"))
    result = runner.invoke(
        args=["send-notification", "--user", "alice", "--user", "bob", "--category", "digest", "hi"]
    )
    assert result.exit_code == 0, result.output
    assert "created 1, delivered live 0, pending 1, skipped 1 (muted the category)" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["hi"], "--user"),
        (["--user", "a", "--topic", "t", "hi"], "--topic"),
        (["--topic", "Bad", "hi"], "invalid input"),
        (["--user", "a", "--category", "A", "hi"], "invalid input"),
    ],
)
def test_send_notification_refuses_a_bad_audience_or_name(runner, args, said):
    result = runner.invoke(args=["send-notification", *args])
    assert result.exit_code != 0 and said in result.output
