"""The committed Alembic revisions build exactly the models' schema, and undo it."""

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app import create_app
from app.extensions import db
from config import TestingConfig


def empty_database_app(database_uri: str):
    """An app whose database has no tables at all, not even Alembic's, for migrations to build."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_uri)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    return app


def test_upgrade_matches_models_and_downgrade_removes_everything(database_uri):
    app = empty_database_app(database_uri)
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diff == []
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("notifications")}
        assert indexes == {
            "ix_notifications_user_status_created",
            "ix_notifications_user_created_id",
            "ix_notifications_unconfirmed",
            "ix_notifications_user_category_created_other",
        }
        downgrade(revision="base")
        tables = {"notifications", "idempotency_keys", "muted_categories", "topic_subscriptions"}
        assert not tables & set(inspect(db.engine).get_table_names())
        db.engine.dispose()


def rows_after_upgrade(database_uri: str, revision: str, insert: str, select: str) -> list[tuple]:
    """Rows stored at `revision` (`insert`, with `:t` a timestamp), read back by `select` after
    upgrading to the head."""
    app = empty_database_app(database_uri)
    with app.app_context():
        upgrade(revision=revision)
        with db.engine.begin() as conn:
            conn.execute(text(insert), {"t": datetime(2026, 11, 30, tzinfo=UTC)})
        upgrade()
        with db.engine.connect() as conn:
            found = [tuple(row) for row in conn.execute(text(select)).all()]
        downgrade(revision="base")
        db.engine.dispose()
    return found


def test_rows_delivered_before_confirmations_existed_count_as_received(database_uri):
    found = rows_after_upgrade(
        database_uri,
        "0001",
        "INSERT INTO notifications (id, user_id, message, status, created_at, delivered_at)"
        " VALUES ('a', 'u', 'm', 'DELIVERED', :t, :t), ('b', 'u', 'm', 'PENDING', :t, NULL)",
        "SELECT id, received_at IS NOT NULL FROM notifications",
    )
    assert dict(found) == {"a": True, "b": False}


def test_rows_stored_before_categories_existed_become_general(database_uri):
    found = rows_after_upgrade(
        database_uri,
        "0003",
        "INSERT INTO notifications (id, user_id, message, status, created_at)"
        " VALUES ('a', 'u', 'm', 'PENDING', :t)",
        "SELECT category, topic FROM notifications",
    )
    assert found == [("general", None)]
