"""Idempotent admin sends (`Idempotency-Key`) and retention (`prune-notifications`)."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import IdempotencyKey, Notification, utcnow

BODY = {"userIds": ["alice", "bob"], "message": "deploy finished"}


def post(client, auth_header, body=BODY, key="retry-1", admin="cron"):
    headers = auth_header(admin, admin=True)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/admin/notifications", json=body, headers=headers)


def stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Notification))


def ids(response) -> list[str]:
    return [n["id"] for n in response.get_json()["notifications"]]


def test_a_retry_answers_as_the_first_time_and_stores_nothing(app, client, auth_header):
    first = post(client, auth_header)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    reordered = {"message": BODY["message"], "userIds": BODY["userIds"]}  # key order aside
    again = post(client, auth_header, body=reordered)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ids(again) == ids(first)
    assert stored(app) == 2


def test_the_same_key_with_another_body_is_422_and_stores_nothing(app, client, auth_header):
    post(client, auth_header)
    other = post(client, auth_header, body={**BODY, "message": "something else"})
    assert other.status_code == 422
    assert other.get_json()["error"] == "idempotency_key_reused"
    assert stored(app) == 2


def test_keys_are_per_admin(app, client, auth_header):
    post(client, auth_header, admin="cron")
    other_admin = post(client, auth_header, admin="ops")
    assert other_admin.status_code == 201 and "Idempotent-Replayed" not in other_admin.headers
    assert stored(app) == 4


@pytest.mark.parametrize(
    "key", ["", "k" * 256, "caf\u00e9", "tab\there"], ids=["empty", "long", "utf8", "control"]
)
def test_a_malformed_key_is_400_and_stores_nothing(app, client, auth_header, key):
    answer = client.post(
        "/v1/admin/notifications",
        json=BODY,
        headers={**auth_header("cron", admin=True), "Idempotency-Key": key.encode().decode("latin-1")},
    )
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"] == "bad_request"
    assert stored(app) == 0


def test_without_a_key_every_post_stores(app, client, auth_header):
    post(client, auth_header, key=None)
    post(client, auth_header, key=None)
    assert stored(app) == 4


def test_an_expired_key_sends_again(app, client, auth_header):
    first = post(client, auth_header)
    with app.app_context():
        db.session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
    again = post(client, auth_header)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert set(ids(again)).isdisjoint(ids(first))


def test_two_concurrent_requests_with_one_key_store_one_set(app, auth_header):
    answers = []

    def send():
        with app.test_client() as client:
            answers.append(post(client, auth_header, key="concurrent"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert stored(app) == 2
    ok = [a for a in answers if a.status_code == 201]
    assert ok and all(a.status_code in (201, 409) for a in answers)
    assert len({tuple(ids(a)) for a in ok}) == 1
    assert sum(1 for a in ok if "Idempotent-Replayed" not in a.headers) == 1


def test_prune_deletes_old_notifications_in_batches_and_expired_keys(app, client, auth_header, runner):
    post(client, auth_header, key="old-key")
    with app.app_context():
        old = db.session.scalars(select(Notification.id)).all()
        db.session.execute(update(Notification).values(created_at=utcnow() - timedelta(days=40)))
        db.session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=30)))
        db.session.execute(update(Notification).where(Notification.id == old[0]).values(status="READ"))
        db.session.commit()
    post(client, auth_header, key=None)  # two recent ones
    only_read = runner.invoke(args=["prune-notifications", "--older-than", "30", "--status", "read"])
    assert only_read.exit_code == 0, only_read.output
    assert "deleted 1 notification(s), 1 expired idempotency key(s)" in only_read.output
    everything_old = runner.invoke(args=["prune-notifications", "--older-than", "30"])
    assert "deleted 1 notification(s), 0 expired" in everything_old.output
    assert stored(app) == 2


def test_prune_refuses_a_bad_age(runner):
    result = runner.invoke(args=["prune-notifications", "--older-than", "-1"])
    assert result.exit_code != 0
