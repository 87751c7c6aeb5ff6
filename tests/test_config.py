"""Configuration: safe defaults and refusals."""

import pytest

from app import create_app
from config import DEV_JWT_SECRET, ProductionConfig, TestingConfig, config_from_env, database_url


def test_production_refuses_the_development_secret():
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        create_app(ProductionConfig, JWT_SECRET_KEY=DEV_JWT_SECRET, SQLALCHEMY_DATABASE_URI="sqlite://")


def test_production_refuses_a_short_secret():
    with pytest.raises(RuntimeError, match="32 characters"):
        create_app(ProductionConfig, JWT_SECRET_KEY="short", SQLALCHEMY_DATABASE_URI="sqlite://")


def test_production_starts_with_a_real_secret():
    app = create_app(
        ProductionConfig,
        JWT_SECRET_KEY="s" * 40,
        SQLALCHEMY_DATABASE_URI="sqlite://",
        SOCKETIO_ASYNC_MODE="threading",
    )
    assert app.config["ENV_NAME"] == "production"


def test_a_heartbeat_longer_than_the_socket_read_deadline_is_logged(caplog):
    """An idle websocket waits ping interval + timeout for a frame: the read deadline should be longer."""
    create_app(TestingConfig, SOCKETIO_PING_INTERVAL=50, SOCKETIO_PING_TIMEOUT=20, HTTP_SOCKET_TIMEOUT=60)
    assert "idle websockets will be closed by the read deadline" in caplog.text
    caplog.clear()
    create_app(TestingConfig)
    assert "read deadline" not in caplog.text


def test_the_heartbeat_settings_reach_engine_io():
    from app.extensions import socketio

    create_app(TestingConfig, SOCKETIO_PING_INTERVAL=7, SOCKETIO_PING_TIMEOUT=3)
    assert (socketio.server.eio.ping_interval, socketio.server.eio.ping_timeout) == (7, 3)


def test_unknown_app_env_is_an_error(monkeypatch):
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(RuntimeError, match="APP_ENV"):
        config_from_env()


def test_cross_origin_requests_are_not_allowed_by_default(tmp_path):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}")
    response = app.test_client().get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert app.extensions["socketio"].server.eio.cors_allowed_origins is None  # same origin only


def test_configured_origins_are_allowed(tmp_path):
    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}",
        CORS_ALLOWED_ORIGINS=["https://app.example"],
    )
    client = app.test_client()
    ok = client.get("/healthz", headers={"Origin": "https://app.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg2://u@h:5432/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_get_an_eventlet_safe_driver(raw, expected):
    assert database_url(raw) == expected


def test_default_database_is_an_sqlite_file_under_instance():
    assert database_url(None).startswith("sqlite:///") and "/instance/" in database_url(None)


def test_token_lifetime_setting_is_the_one_flask_jwt_extended_reads(monkeypatch):
    import importlib

    import jwt as pyjwt
    from flask_jwt_extended import create_access_token

    import config

    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES", "120")
    reloaded = importlib.reload(config)
    try:
        app = create_app(reloaded.TestingConfig, SQLALCHEMY_DATABASE_URI="sqlite://")
        with app.app_context():
            claims = pyjwt.decode(create_access_token("alice"), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 120
    finally:
        monkeypatch.delenv("JWT_ACCESS_TOKEN_EXPIRES")
        importlib.reload(config)
