"""The Admin UI's settings and login check (app/realtime/admin_ui.py); the UI itself is tested on a real
server (tests/e2e/test_ops.py, tests/e2e/test_docs_page.py), since instrumenting patches python-engineio
for the whole process."""

import pytest

from app import create_app
from app.realtime.admin_ui import Credentials
from config import ProductionConfig, TestingConfig


def test_the_admin_ui_is_off_without_a_password(client):
    assert "admin_ui" not in client.application.extensions
    assert client.get("/admin-ui/").status_code == 404
    assert client.get("/admin-ui/js/app.js").status_code == 404


def test_production_refuses_a_short_admin_ui_password():
    with pytest.raises(RuntimeError, match="ADMIN_UI_PASSWORD"):
        create_app(
            ProductionConfig,
            JWT_SECRET_KEY="s" * 40,
            SQLALCHEMY_DATABASE_URI="sqlite://",
            SOCKETIO_ASYNC_MODE="threading",
            ADMIN_UI_PASSWORD="short",
        )


def test_an_unknown_admin_ui_mode_is_an_error():
    with pytest.raises(RuntimeError, match="ADMIN_UI_MODE"):
        create_app(
            TestingConfig, SQLALCHEMY_DATABASE_URI="sqlite://", ADMIN_UI_PASSWORD="p", ADMIN_UI_MODE="x"
        )


@pytest.mark.parametrize(
    ("auth", "accepted"),
    [
        ({"username": "admin", "password": "right"}, True),
        ({"username": "admin", "password": "wrong"}, False),
        ({"username": "root", "password": "right"}, False),
        ({"username": "admin"}, False),
        ({"username": "admin", "password": 1}, False),
        ("admin:right", False),
        (None, False),
    ],
)
def test_only_the_configured_login_is_accepted(auth, accepted):
    assert Credentials("admin", "right")(auth) is accepted
