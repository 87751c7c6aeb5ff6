"""Helpers for tests of the app in this process: its tokens, its database, the Flask-SocketIO test client."""

import contextlib

from sqlalchemy import select

from app import create_app
from app.auth import create_token
from app.extensions import db
from app.models import Notification
from config import TestingConfig


def app_token(app, user_id: str, admin: bool = False, expires_in: int | None = None) -> str:
    """A token as `app` itself signs them (`flask create-token`), with its key and default lifetime."""
    with app.app_context():
        return create_token(user_id, admin=admin, expires_in=expires_in)


def received(sc) -> dict[str, list]:
    """What a Socket.IO test client got since the last call: event name -> payloads."""
    by_name: dict[str, list] = {}
    for event in sc.get_received():
        by_name.setdefault(event["name"], []).append(event["args"][0])
    return by_name


def stored_statuses(app, user_id: str) -> dict[str, str]:
    """Notification id -> stored status, for every notification of `user_id`."""
    with app.app_context():
        rows = db.session.execute(
            select(Notification.id, Notification.status).where(Notification.user_id == user_id)
        )
        return {row.id: row.status.value for row in rows}


@contextlib.contextmanager
def fresh_app(database_uri: str, prepare=None, **overrides):
    """An app on `database_uri` with empty tables, then `prepare(app)` in its context; dropped after."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_uri, **overrides)
    with app.app_context():
        db.drop_all()
        db.create_all()
        if prepare is not None:
            prepare(app)
    try:
        yield app
    finally:
        app.extensions["delivery"].confirmations.stop()
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
