"""The one-statement bulk paths store and find exactly what SQLAlchemy's row-by-row ones do."""

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select

from app.extensions import db
from app.models import RECORD_COLUMNS, MutedCategory, Notification, NotificationRecord
from app.protocol import NotificationStatus
from app.records import new_records
from app.schemas import notification_to_wire, notifications_to_wire
from app.services import rows

AWKWARD = [
    "plain",
    "ünïcödé",
    'quote"s',
    "back\\slash",
    "tab\tand\nnewline",
    "emoji 🎉",
    "line\u2028separator",
    "control\x01\x1f",
    "[1, 2]",
    "null",
    "x" * 250,  # room for a suffix within 255
]
T0 = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)


def fan_out(count: int) -> list[NotificationRecord]:
    """A fan-out's records: one message, data dict and timestamp shared, ids and users per row."""
    data = {"url": "/a?b=c", "nested": {"list": [1, 2.5, None, True], "text": 'é"\\'}}
    return [
        NotificationRecord(
            id=f"00000000-0000-4000-8000-{i:012d}",
            user_id=AWKWARD[i % len(AWKWARD)] + str(i),
            message="shared ✓",
            status=NotificationStatus.PENDING,
            created_at=T0,
            delivered_at=None,
            read_at=None,
            data=data,
            created_by="admin",
            category="general",
            topic=None,
        )
        for i in range(count)
    ]


def all_varying(count: int) -> list[NotificationRecord]:
    """Records in which every column differs from row to row, nulls and awkward text included."""
    statuses = list(NotificationStatus)
    records = []
    for i in range(count):
        at = T0 + timedelta(microseconds=i * 1001, seconds=i)
        records.append(
            NotificationRecord(
                id=f"00000000-0000-4000-8000-{i:012d}",
                user_id=AWKWARD[i % len(AWKWARD)],
                message=AWKWARD[(i + 3) % len(AWKWARD)],
                status=statuses[i % 3],
                created_at=at.replace(microsecond=0) if i % 4 == 0 else at,
                delivered_at=None if i % 3 == 0 else at,
                read_at=at if i % 3 == 2 else None,
                received_at=at if i % 2 else None,
                data=None if i % 5 == 0 else {"i": i, "s": AWKWARD[i % len(AWKWARD)]},
                created_by=None if i % 2 else AWKWARD[i % len(AWKWARD)],
                category=f"cat-{i % 4}",
                topic=None if i % 3 else f"topic.{i}",
            )
        )
    return records


def stored_raw() -> list[tuple]:
    """Every notification row as the driver reads it (no conversion by SQLAlchemy), by id."""
    names = ", ".join(column.name for column in RECORD_COLUMNS)
    with db.engine.connect() as connection:
        result = connection.exec_driver_sql(f"SELECT {names} FROM notifications ORDER BY id")
        return [tuple(row) for row in result]


def stored_by(write, records: list[NotificationRecord]) -> list[tuple]:
    write(records)
    db.session.commit()
    stored = stored_raw()
    db.session.execute(delete(Notification))
    db.session.commit()
    return stored


def row_by_row(records: list[NotificationRecord]) -> None:
    db.session.execute(insert(Notification), [asdict(n) for n in records])


@pytest.mark.parametrize("records", [fan_out(1), fan_out(300), all_varying(1), all_varying(60)])
def test_bulk_insert_stores_what_the_row_by_row_insert_stores(app, records):
    with app.app_context():
        expected = stored_by(row_by_row, records)
        assert len(expected) == len(records)
        assert stored_by(rows.insert, records) == expected


def test_bulk_insert_of_mixed_statuses_keeps_each_rows_own(app):
    records = fan_out(20)
    for n in records[::3]:
        n.status, n.delivered_at, n.received_at = NotificationStatus.DELIVERED, T0, T0
    with app.app_context():
        assert stored_by(rows.insert, records) == stored_by(row_by_row, records)


def test_bulk_insert_failure_stores_nothing(app):
    records = fan_out(50)
    records[-1].id = records[0].id  # the primary key refuses the last row
    with app.app_context():
        with pytest.raises(Exception):  # noqa: B017, PT011  (the driver's IntegrityError)
            rows.insert(records)
            db.session.commit()
        db.session.rollback()
        assert stored_raw() == []


def mute(pairs: list[tuple[str, str]]) -> None:
    db.session.execute(insert(MutedCategory), [{"user_id": u, "category": c} for u, c in pairs])
    db.session.commit()


@pytest.mark.parametrize("write", [rows.insert_alone, rows.insert], ids=["alone", "in-a-transaction"])
@pytest.mark.parametrize("count", [1, 700])
def test_the_insert_leaves_out_exactly_the_users_who_muted_the_rows_category(app, write, count):
    records = fan_out(count)
    for n in records:
        n.category = "news"
    users = [n.user_id for n in records]
    with app.app_context():
        # users[0] muted the category; every seventh user (and users[1]) muted another one
        mute([(users[0], "news")] + [(u, "other") for u in users[1::7]] + [(f"{users[-1]}x", "news")])
        written = write(records)
        db.session.commit()
        assert [n.user_id for n in written] == users[1:]
        assert {(row[0], row[1]) for row in stored_raw()} == {(n.id, n.user_id) for n in records[1:]}


@pytest.mark.parametrize("write", [rows.insert_alone, rows.insert], ids=["alone", "in-a-transaction"])
def test_an_insert_every_user_muted_stores_nothing_and_says_so(app, write):
    records = fan_out(5)
    for n in records:
        n.category = "news"
    with app.app_context():
        mute([(n.user_id, "news") for n in records])
        assert write(records) == []
        db.session.commit()
        assert stored_raw() == []


@pytest.mark.parametrize("online", [set(), {"b"}, {"a", "b", "c"}])
def test_new_records_hold_each_value_in_its_own_field(online):
    plain = online & {"c"}
    made = new_records(["a", "b", "c"], online, plain, message="m", data={"k": 1}, created_by="x", topic="t")
    for n in made:
        now = n.created_at
        expected = NotificationRecord(
            id=n.id,
            user_id=n.user_id,
            message="m",
            status=NotificationStatus.DELIVERED if n.user_id in online else NotificationStatus.PENDING,
            created_at=now,
            delivered_at=now if n.user_id in online else None,
            read_at=None,
            received_at=now if n.user_id in plain else None,
            data={"k": 1},
            created_by="x",
            category="general",
            topic="t",
        )
        assert n == expected
    assert [n.user_id for n in made] == ["a", "b", "c"] and len({n.id for n in made}) == 3


def test_bulk_insert_refuses_a_value_longer_than_its_column_rather_than_cut_it(app):
    records = fan_out(3)
    records[1].user_id = "y" * 256
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite does not enforce VARCHAR lengths")
        with pytest.raises(Exception, match="too long"):  # noqa: B017, PT011  (the driver's DataError)
            rows.insert(records)
        db.session.rollback()
        assert stored_raw() == []


def read_by_sqlalchemy() -> dict[str, NotificationRecord]:
    """Every stored notification as SQLAlchemy's own type processing reads it, by id."""
    result = db.session.execute(select(*RECORD_COLUMNS))
    return {row.id: NotificationRecord(*row) for row in result}


@pytest.mark.parametrize("received", [False, True])
def test_claimed_records_hold_what_sqlalchemy_reads_back(app, received):
    records = all_varying(60)
    for n in records[::2]:
        n.status, n.delivered_at, n.received_at = NotificationStatus.PENDING, None, None
    pending = sorted(n.id for n in records if n.status is NotificationStatus.PENDING)
    with app.app_context():
        rows.insert(records)
        db.session.commit()
        claimed = rows.claim(Notification.__table__.c.user_id.in_(AWKWARD), received=received)
        stored = read_by_sqlalchemy()
        assert sorted(n.id for n in claimed) == pending
        for n in claimed:
            assert n == stored[n.id]
            assert notification_to_wire(n, sender=True) == notification_to_wire(stored[n.id], sender=True)
            assert type(n.status) is NotificationStatus and n.created_at.tzinfo is UTC
        data = [n.data for n in claimed if n.data is not None]
        assert len({id(d) for d in data}) == len(data), "each record has a dict of its own"


def test_confirm_stamps_only_the_unstamped_ones_among_the_ids_in_every_batch(app):
    records = fan_out(rows.CONFIRM_BATCH + 20)
    for n in records:
        n.status, n.delivered_at = NotificationStatus.DELIVERED, T0
    records[3].received_at = T0
    with app.app_context():
        rows.insert(records)
        db.session.commit()
        asked = [n.id for n in records[:-5]] + ["00000000-0000-4000-8000-999999999999"]
        assert rows.confirm(asked) == len(records) - 5 - 1
        stored = read_by_sqlalchemy()
        assert stored[records[3].id].received_at == T0
        assert all(stored[n.id].received_at is None for n in records[-5:])
        stamped = {stored[n.id].received_at for n in records[:-5]} - {T0}
        assert len(stamped) == 1 and stamped.pop().tzinfo is UTC
        assert rows.confirm(asked) == 0


def test_a_fan_outs_ids_ascend_with_its_user_ids_and_its_records_keep_the_given_order():
    users = ["carol", "alice", "émile", "bob", "Zed", "alice2"]
    made = new_records(users, set(), set(), message="m")
    assert [n.user_id for n in made] == users
    by_user = sorted(made, key=lambda n: n.user_id)
    assert [n.id for n in by_user] == sorted(n.id for n in made)


@pytest.mark.parametrize("sender", [False, True])
def test_the_views_of_many_rows_equal_each_rows_own_view(sender):
    records = fan_out(30) + all_varying(12) + fan_out(5)
    for n in records[:30:4]:
        n.status, n.delivered_at = NotificationStatus.DELIVERED, T0 + timedelta(seconds=1)
    records[31].message = records[30].message  # equal, but not the same object
    views = notifications_to_wire(records, sender=sender)
    assert views == [notification_to_wire(n, sender=sender) for n in records]
    assert len({id(view) for view in views}) == len(views)
