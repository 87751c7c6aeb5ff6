"""The inbox (contract v2): unread count, read-all, every socket of the user in step, data, sender."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select

from app.extensions import db
from app.models import Notification
from app.records import new_id
from app.services import delivery, inbox
from tests.support.inprocess import received


def send(admin_post, user_ids, message="hello", **extra):
    response = admin_post(user_ids, message, **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["notifications"]


def post(client, auth_header, body, admin="admin", **headers):
    return client.post(
        "/v1/admin/notifications", json=body, headers={**auth_header(admin, admin=True), **headers}
    )


# ---- unread count ----------------------------------------------------------------------


def test_unread_count_counts_what_is_not_read(client, auth_header, admin_post):
    notes = send(admin_post, ["alice"]) + send(admin_post, ["alice"]) + send(admin_post, ["bob"])
    client.put(f"/v1/notifications/{notes[0]['id']}/read", headers=auth_header("alice"))
    answer = client.get("/v1/notifications/unread-count", headers=auth_header("alice"))
    assert answer.status_code == 200 and answer.get_json() == {"count": 1}
    assert client.get("/v1/notifications/unread-count").status_code == 401


def test_every_socket_gets_the_count_after_connect_and_after_each_change(
    client, auth_header, socket_client, admin_post
):
    [old] = send(admin_post, ["alice"], "while away")
    tab1 = socket_client("alice")
    got = received(tab1)
    assert list(got) == ["pending_notifications", "unread_count"]  # the count comes after the pending
    assert got["unread_count"] == [{"count": 1}]
    tab2 = socket_client("alice")
    assert received(tab2)["unread_count"] == [{"count": 1}]

    [new] = send(admin_post, ["alice"], "live")
    for tab in (tab1, tab2):
        assert received(tab)["unread_count"] == [{"count": 2}]

    client.put(f"/v1/notifications/{old['id']}/read", headers=auth_header("alice"))
    for tab in (tab1, tab2):
        got = received(tab)
        [updated] = got["notification_updated"]
        assert updated["id"] == old["id"] and updated["status"] == "READ" and updated["readAt"]
        assert got["unread_count"] == [{"count": 1}]

    client.delete(f"/v1/notifications/{new['id']}", headers=auth_header("alice"))
    for tab in (tab1, tab2):
        assert received(tab) == {"notification_deleted": [{"id": new["id"]}], "unread_count": [{"count": 0}]}


def test_reading_twice_sends_nothing_the_second_time(client, auth_header, socket_client, admin_post):
    [note] = send(admin_post, ["alice"])
    tab = socket_client("alice")
    received(tab)
    for _ in range(2):
        client.put(f"/v1/notifications/{note['id']}/read", headers=auth_header("alice"))
    assert len(received(tab)["notification_updated"]) == 1


def test_other_users_sockets_hear_nothing(client, auth_header, socket_client, admin_post):
    [note] = send(admin_post, ["alice"])
    bob = socket_client("bob")
    received(bob)
    client.put(f"/v1/notifications/{note['id']}/read", headers=auth_header("alice"))
    client.post("/v1/notifications/read-all", headers=auth_header("alice"))
    client.delete(f"/v1/notifications/{note['id']}", headers=auth_header("alice"))
    assert received(bob) == {}


def test_count_stays_exact_while_creates_and_reads_interleave(app, admin_post):
    """The count is computed, never maintained: it cannot drift however writes interleave."""
    errors = []

    def creator():
        try:
            with app.app_context():
                for i in range(30):
                    delivery.current().create(["carol"], f"n{i}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader():
        try:
            with app.app_context():
                for _ in range(30):
                    rows = db.session.scalars(
                        select(Notification.id).where(Notification.user_id == "carol").limit(3)
                    ).all()
                    db.session.commit()
                    for notification_id in rows:
                        inbox.mark_read("carol", notification_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=creator), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with app.app_context():
        unread = db.session.scalar(
            select(db.func.count()).where(Notification.user_id == "carol", Notification.read_at.is_(None))
        )
        assert inbox.unread_count("carol") == unread
        assert inbox.unread_counts(["carol", "nobody"]) == {"carol": unread, "nobody": 0}


# ---- read-all ----------------------------------------------------------------------------


def test_read_all_marks_every_unread_one_with_one_time_and_repeats_update_nothing(
    client, auth_header, socket_client, admin_post
):
    notes = send(admin_post, ["alice"]) + send(admin_post, ["alice"]) + send(admin_post, ["bob"])
    tab = socket_client("alice")
    received(tab)
    first = client.post("/v1/notifications/read-all", headers=auth_header("alice"))
    assert first.status_code == 200
    body = first.get_json()
    assert body["updated"] == 2 and body["readAt"].endswith("Z")
    listed = client.get("/v1/notifications", headers=auth_header("alice")).get_json()
    assert {n["status"] for n in listed} == {"READ"} and {n["readAt"] for n in listed} == {body["readAt"]}
    assert received(tab) == {
        "notifications_read_all": [{"readAt": body["readAt"], "count": 2}],
        "unread_count": [{"count": 0}],
    }
    again = client.post("/v1/notifications/read-all", headers=auth_header("alice")).get_json()
    assert again["updated"] == 0
    assert received(tab) == {}
    bobs = client.get("/v1/notifications", headers=auth_header("bob")).get_json()
    assert [n["status"] for n in bobs] == ["PENDING"] and bobs[0]["id"] == notes[2]["id"]


# ---- data and sender -----------------------------------------------------------------------


def test_data_is_stored_and_sent_and_the_sender_is_told_who_sent_it(
    client, auth_header, socket_client, admin_post
):
    tab = socket_client("alice")
    received(tab)
    payload = {"url": "https://example.com/deploys/42", "nested": {"n": [1, 2]}}
    [answer] = send(admin_post, ["alice"], "deployed", data=payload)
    assert answer["data"] == payload and answer["createdBy"] == "admin"
    [live] = received(tab)["new_notification"]
    assert live["data"] == payload and "createdBy" not in live
    [listed] = client.get("/v1/notifications", headers=auth_header("alice")).get_json()
    assert listed["data"] == payload and "createdBy" not in listed
    [plain] = send(admin_post, ["alice"], "no data")
    assert plain["data"] is None


@pytest.mark.parametrize(
    "data",
    [["not", "an", "object"], "text", 42, {"big": "x" * 5000}],
    ids=["list", "string", "number", "too-big"],
)
def test_bad_data_is_400_and_stores_nothing(app, client, auth_header, data):
    answer = post(client, auth_header, {"userIds": ["alice"], "message": "m", "data": data})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "validation_error" and "data" in answer.get_json()["details"]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Notification)) == 0


@pytest.mark.config(MAX_DATA_BYTES=20)
def test_data_limit_is_a_setting(admin_post):
    assert admin_post(["a"], "m", data={"k": "x" * 8}).status_code == 201  # {"k":"xxxxxxxx"}: 16 bytes
    assert admin_post(["a"], "m", data={"k": "x" * 20}).status_code == 400


# ---- the list by category ----------------------------------------------------------------


def category_history() -> list[dict]:
    """1,000 rows each of three users: mostly "general", a tenth "promo", a few "deploys"; two
    rows per timestamp, so that pages also break between equal timestamps."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    return [
        {
            "id": new_id(),
            "user_id": user,
            "message": f"{user}{i}",
            "created_at": start + timedelta(seconds=i // 2),
            "category": "promo" if i % 20 < 2 else "deploys" if i % 50 == 2 else "general",
        }
        for user in ("alice", "bob", "carol")
        for i in range(1000)
    ]


def all_pages(category: str, limit: int, pages: int | None = None) -> tuple[list[str], list[str]]:
    """The ids of alice's first `pages` pages of `category` (all of them by default), and the
    SQL of the listing queries that fetched them."""
    statements, ids, cursor = [], [], None

    def keep(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        while pages is None or len(statements) < pages:
            page, cursor = inbox.list_notifications("alice", limit=limit, cursor=cursor, category=category)
            ids += [n.id for n in page]
            if cursor is None:
                break
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    return ids, statements


def test_a_category_lists_its_rows_newest_first_from_its_own_index(app):
    """Rows of the default category stay out of the category index (migration 0006); a page of
    another category still reads it, in order (on SQLite only because the query names the
    index's WHERE; on PostgreSQL only because it does not), and the default category's pages
    come from ix_notifications_user_created_id."""
    history = category_history()
    with app.app_context():
        db.session.execute(insert(Notification), history)
        db.session.commit()
        connection = db.session.connection()
        connection.exec_driver_sql("ANALYZE notifications")
        explain = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "

        def newest_first(category: str) -> list[str]:
            rows = [r for r in history if r["user_id"] == "alice" and r["category"] == category]
            return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]

        def plans(statements) -> list[str]:
            """The plan of each statement; the first page's reads its index in order, no sort
            (a page near the end may sort the few rows left)."""
            found = [
                "\n".join(str(row[-1]) for row in connection.exec_driver_sql(explain + sql, params))
                for sql, params in statements
            ]
            assert "Sort" not in found[0] and "TEMP B-TREE" not in found[0], found[0]
            return found

        promo, statements = all_pages("promo", limit=15)
        assert promo == newest_first("promo") and len(statements) == 7  # 100 rows: 6 x 15, 10
        for plan in plans(statements):
            assert "ix_notifications_user_category_created_other" in plan, plan
        general, statements = all_pages("general", limit=50, pages=3)
        assert general == newest_first("general")[:150]
        for plan in plans(statements):
            assert "ix_notifications_user_created_id" in plan, plan
        db.session.rollback()
