"""The per-send reads on the database (app/services/reads.py): unread counts, a connect's state."""

import pytest
from sqlalchemy import event, insert

from app.extensions import db
from app.models import Notification, NotificationStatus
from app.records import new_id, utcnow
from app.services import delivery, inbox, reads


def test_unread_counts_count_what_is_not_read_and_zero_for_unknown_users(app):
    with app.app_context():
        core = delivery.current()
        first, _second = core.create(["alice"], "one") + core.create(["alice"], "two")
        core.create(["bob"], "three")
        inbox.mark_read("alice", first.id)
        users = ["alice", "bob", "carol"] + [f"x{i}" for i in range(reads.BATCH)]
        counts = inbox.unread_counts(users)
        assert (counts["alice"], counts["bob"], counts["carol"]) == (1, 1, 0)
        assert len(counts) == len(users) and sum(counts.values()) == 2


def test_unread_counts_read_the_index_of_user_and_status(app):
    """No index of unread rows of its own (migration 0005): every unread read finds a user's
    rows of each unread status in ix_notifications_user_status_created, on a table where the
    choice matters (a long history, mostly READ), as the planner sees it after ANALYZE."""
    reads_and_params = [
        (reads._UNREAD_COUNTS, {"users": '["alice"]'}),
        (reads._CONNECT_STATE, {"user": "alice"}),
    ]
    statuses = [NotificationStatus.READ] * 18 + [NotificationStatus.DELIVERED, NotificationStatus.PENDING]
    rows = [
        {
            "id": new_id(),
            "user_id": user,
            "message": "m",
            "status": statuses[i % len(statuses)],
            "created_at": utcnow(),
        }
        for user in ("alice", "bob", "carol")
        for i in range(1000)
    ]
    with app.app_context():
        db.session.execute(insert(Notification), rows)
        db.session.commit()
        connection = db.session.connection()
        connection.exec_driver_sql("ANALYZE notifications")
        dialect = connection.dialect.name
        explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
        for template, params in reads_and_params:
            sql = explain + reads._in_dialect(template, dialect)
            plan = "\n".join(str(row[-1]) for row in connection.exec_driver_sql(sql, params))
            reads_of_table = template.count(" FROM notifications ")
            assert plan.count("ix_notifications_user_status_created") == reads_of_table, plan
        db.session.rollback()


def test_a_read_stopped_mid_statement_does_not_go_back_to_the_pool(app):
    """A green thread stopped inside a statement (a timeout) leaves its connection in an unknown
    state: the next read gets a fresh one."""

    class Stopping:
        def __conform__(self, _protocol):  # the driver adapts the parameter inside execute()
            raise KeyboardInterrupt

    opened = []
    with app.app_context():
        assert reads.connect_state("bob") == (False, 0)
        event.listen(db.engine, "connect", lambda *_: opened.append(1))
        with pytest.raises(KeyboardInterrupt):
            reads._driver_read(reads._CONNECT_STATE, [{"user": Stopping()}])
        assert reads.connect_state("bob") == (False, 0)
    assert len(opened) == 1
