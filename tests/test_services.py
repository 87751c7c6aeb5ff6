"""Service functions: persistence, presence and the order of delivery."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import records
from app.errors import DomainError, NotFoundError
from app.extensions import db
from app.models import Notification, NotificationStatus
from app.services import delivery, inbox
from app.services.presence.local import LocalPresence
from tests.support.statements import statements_sent


def statuses(user_id: str) -> list[NotificationStatus]:
    return list(db.session.scalars(select(Notification.status).where(Notification.user_id == user_id)))


def test_create_stores_pending_for_offline_and_delivered_for_online(app):
    with app.app_context():
        delivery.current().presence.add("alice", "sid-1")
        created = delivery.current().create(["alice", "bob"], "hi")
        by_user = {n.user_id: n for n in created}
        assert by_user["alice"].status is NotificationStatus.DELIVERED
        assert by_user["alice"].delivered_at is not None
        assert by_user["bob"].status is NotificationStatus.PENDING
        assert by_user["bob"].delivered_at is None
        assert statuses("alice") == [NotificationStatus.DELIVERED]
        assert statuses("bob") == [NotificationStatus.PENDING]


def test_create_counts_duplicate_user_ids_once(app):
    with app.app_context():
        created = delivery.current().create(["a", "b", "a", "a"], "hi")
        assert [n.user_id for n in created] == ["a", "b"]
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 2


def test_create_writes_all_rows_in_one_insert_statement(app):
    with app.app_context():
        with statements_sent() as sent:
            delivery.current().create([f"user{i}" for i in range(500)], "bulk")
        assert [word for word, _autocommit in sent if word == "INSERT"] == ["INSERT"]
        assert ("INSERT", True) in sent and "BEGIN" not in {word for word, _ in sent}  # alone, in autocommit
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 500


def test_a_row_the_database_refuses_leaves_none_of_the_others_stored(app, monkeypatch):
    with app.app_context():
        [existing] = delivery.current().create(["first"], "x")
        fresh = records.new_ids
        monkeypatch.setattr(records, "new_ids", lambda count: fresh(count - 1) + [existing.id])  # a duplicate
        with pytest.raises(IntegrityError):
            delivery.current().create(["a", "b", "c"], "x")
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_failure_inside_the_transaction_stores_nothing(app):
    with app.app_context():

        def boom():
            raise RuntimeError("failed before commit")

        with pytest.raises(RuntimeError):
            delivery.current().create(["a", "b"], "x", before_commit=boom)
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_after_work_in_autocommit_a_failed_transaction_still_stores_nothing(app, monkeypatch):
    """Single statements run in the driver's autocommit; the connection must not go back to the
    pool that way, or a later transaction's first statement would commit on its own."""

    def boom():
        raise RuntimeError("failed before commit")

    with app.app_context():
        core = delivery.current()
        [existing] = core.create(["first"], "x")  # one INSERT in autocommit
        assert core.store.connect_state("first") == (True, 1)
        assert [n.id for n in core.store.claim(users=["first"])] == [existing.id]
        fresh = records.new_ids
        monkeypatch.setattr(records, "new_ids", lambda count: fresh(count - 1) + [existing.id])
        with pytest.raises(IntegrityError):  # a statement that fails in autocommit
            core.create(["a", "b"], "x")
        monkeypatch.undo()
        for _ in range(3):  # whichever pooled connection the session gets
            with pytest.raises(RuntimeError):
                core.create(["c", "d"], "x", before_commit=boom)
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


@pytest.mark.parametrize(
    ("user_ids", "message"),
    [([], "x"), ([""], "x"), (["a", 3], "x"), (["a"], ""), (["a"], None)],
)
def test_create_rejects_bad_input(app, user_ids, message):
    with app.app_context():
        with pytest.raises(DomainError):
            delivery.current().create(user_ids, message)
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_claim_changes_only_pending_rows_and_returns_them(app):
    with app.app_context():
        first, second = delivery.current().create(["a", "b"], "x")
        inbox.mark_read("b", second.id)
        changed = delivery.current().store.claim(ids=[first.id, second.id])
        assert [n.id for n in changed] == [first.id]
        assert delivery.current().store.claim(ids=[first.id]) == []
        assert statuses("a") == [NotificationStatus.DELIVERED]
        assert statuses("b") == [NotificationStatus.READ]


def test_list_is_newest_first_with_limit_status_and_cursor(app):
    with app.app_context():
        ids = [delivery.current().create(["a"], f"m{i}")[0].id for i in range(5)]
        inbox.mark_read("a", ids[1])
        page, cursor = inbox.list_notifications("a", limit=2)
        assert [n.id for n in page] == [ids[4], ids[3]]
        page2, cursor2 = inbox.list_notifications("a", limit=2, cursor=cursor)
        assert [n.id for n in page2] == [ids[2], ids[1]]
        page3, cursor3 = inbox.list_notifications("a", limit=2, cursor=cursor2)
        assert [n.id for n in page3] == [ids[0]] and cursor3 is None
        read, _ = inbox.list_notifications("a", limit=10, status=NotificationStatus.READ)
        assert [n.id for n in read] == [ids[1]]


def test_list_cursor_keeps_rows_with_equal_timestamps(app):
    with app.app_context():
        created = delivery.current().create(["a"], "x")[0]
        same_time = created.created_at
        for i in range(4):
            db.session.add(Notification(user_id="a", message=f"t{i}", created_at=same_time))
        db.session.commit()
        seen, cursor = [], None
        while True:
            page, cursor = inbox.list_notifications("a", limit=2, cursor=cursor)
            seen += [n.id for n in page]
            if cursor is None:
                break
        assert len(seen) == 5 and len(set(seen)) == 5


def test_list_rejects_a_forged_cursor(app):
    with app.app_context():
        with pytest.raises(DomainError):
            inbox.list_notifications("a", limit=5, cursor="not-a-cursor!!")


def test_mark_read_is_idempotent(app):
    with app.app_context():
        n = delivery.current().create(["a"], "x")[0]
        first = inbox.mark_read("a", n.id)
        read_at = first.read_at
        assert first.status is NotificationStatus.READ and read_at is not None
        assert first.delivered_at is not None
        again = inbox.mark_read("a", n.id)
        assert again.read_at == read_at


@pytest.mark.parametrize("action", [inbox.mark_read, inbox.delete_notification])
def test_other_users_and_malformed_ids_are_not_found(app, action):
    with app.app_context():
        n = delivery.current().create(["a"], "x")[0]
        for user_id, notification_id in [
            ("b", n.id),
            ("a", "not-a-uuid"),
            ("a", "00000000-0000-0000-0000-000000000000"),
        ]:
            with pytest.raises(NotFoundError):
                action(user_id, notification_id)
        assert statuses("a") == [NotificationStatus.PENDING]


def test_delete_removes_the_row(app):
    with app.app_context():
        n = delivery.current().create(["a"], "x")[0]
        inbox.delete_notification("a", n.id)
        assert statuses("a") == []


def test_timestamps_are_timezone_aware_utc(app):
    with app.app_context():
        n = delivery.current().create(["a"], "x")[0]
        db.session.expire_all()
        stored = db.session.get(Notification, n.id)
        assert stored.created_at.tzinfo is not None
        assert stored.created_at.utcoffset() == timedelta(0)
        assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_presence_counts_every_socket_of_a_user():
    presence = LocalPresence()
    presence.add("alice", "s1")
    presence.add("alice", "s2")
    assert presence.online(["alice", "bob"]) == {"alice"}
    assert presence.remove("s1") == "alice"
    assert presence.online(["alice"]) == {"alice"}
    assert presence.remove("s2") == "alice"
    assert presence.online(["alice"]) == set()
    assert presence.remove("s2") is None


def test_fast_wire_form_equals_the_schema_for_every_status(app):
    from app.schemas import NotificationSchema, notification_to_wire

    with app.app_context():
        pending, delivered = delivery.current().create(["p", "d"], "x <b>y</b> ü")
        delivery.current().store.claim(ids=[delivered.id])
        read = inbox.mark_read("d", delivered.id)
        for row in (pending, delivered, read, db.session.get(Notification, pending.id)):
            assert notification_to_wire(row) == NotificationSchema().dump(row)


def test_bulk_ids_are_distinct_time_ordered_uuids():
    import time
    import uuid

    from app.models import new_id, new_ids

    before = time.time_ns() // 1_000_000
    ids = new_ids(2000) + [new_id()]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 2001 and new_ids(0) == []
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
        assert before <= parsed.int >> 80 <= after  # its first 48 bits: Unix time in milliseconds
    random_bits = {uuid.UUID(value).int & ((1 << 74) - 1) for value in ids}
    assert len(random_bits) == 2001


@pytest.mark.parametrize("notification_id", ["a\x00b", "not-a-uuid"])
def test_a_cursor_naming_no_notification_id_is_refused(app, notification_id):
    import base64

    position = f"2026-11-29T10:00:00+00:00|{notification_id}"
    cursor = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")
    with app.app_context(), pytest.raises(DomainError, match="cursor"):
        inbox.list_notifications("alice", limit=10, cursor=cursor)
