"""Configuration classes; the only module that reads environment variables."""

import os
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be an integer, got {raw!r}") from exc


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_url(raw: str | None) -> str:
    """Normalise a database URL: default SQLite file, eventlet-safe PostgreSQL driver."""
    if not raw:
        return f"sqlite:///{BASE_DIR / 'instance' / 'notifications.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            # psycopg2, which eventlet.monkey_patch() in wsgi.py makes cooperative.
            return "postgresql+psycopg2://" + raw[len(prefix) :]
    return raw


class Config:
    """Settings shared by every environment, read from the environment once."""

    ENV_NAME = "development"
    HOST = os.environ.get("HOST", "127.0.0.1")
    PORT = _env_int("PORT", 5000)

    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    # PostgreSQL connection pool of one process (ignored for SQLite): 20 kept open, none beyond.
    # A connection beyond the pool size is closed as soon as it is returned, so under steady
    # load each such checkout started a PostgreSQL backend of its own (bench/README.md).
    DB_POOL_SIZE = _env_int("DB_POOL_SIZE", 20)
    DB_MAX_OVERFLOW = _env_int("DB_MAX_OVERFLOW", 0)
    DB_POOL_TIMEOUT = _env_int("DB_POOL_TIMEOUT", 10)

    SOCKETIO_MESSAGE_QUEUE = os.environ.get("SOCKETIO_MESSAGE_QUEUE") or None
    # Seconds after which a process that stopped its heartbeat (crashed, or cut off from
    # Redis) no longer counts its sockets as online; it beats every third of that.
    PRESENCE_TTL = _env_int("PRESENCE_TTL", 15)
    # Seconds after which a notification sent but not confirmed (no acknowledgement from an
    # acknowledging socket, no send to a plain one) goes back to PENDING and is sent again
    # (app/services/confirmations.py). The sweeper looks every third of it.
    DELIVERY_CONFIRM_TIMEOUT = _env_int("DELIVERY_CONFIRM_TIMEOUT", 30)
    PRESENCE_KEY_PREFIX = os.environ.get("PRESENCE_KEY_PREFIX", "notifications:presence")
    PRESENCE_REDIS_URL = None  # tests only: shared presence without a message queue
    # `flask ...` commands (run, send-notification, db) use threads; `python wsgi.py` uses eventlet.
    SOCKETIO_ASYNC_MODE = "threading" if os.environ.get("FLASK_RUN_FROM_CLI") else "eventlet"
    CORS_ALLOWED_ORIGINS = _env_list("CORS_ALLOWED_ORIGINS")

    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or DEV_JWT_SECRET
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    # Flask-JWT-Extended's own setting, so every create_access_token() call uses it.
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=_env_int("JWT_ACCESS_TOKEN_EXPIRES", 3600))

    # Concurrent connections (HTTP and Socket.IO) one process serves; eventlet's default is 1024.
    MAX_CONNECTIONS = _env_int("MAX_CONNECTIONS", 20_000)
    LISTEN_BACKLOG = _env_int("LISTEN_BACKLOG", 1024)
    # Sockets one user may hold open at once, so one user cannot use up the others' share.
    MAX_SOCKETS_PER_USER = _env_int("MAX_SOCKETS_PER_USER", 32)
    # Seconds a stopping process waits for running requests before it exits anyway.
    GRACEFUL_TIMEOUT = _env_int("GRACEFUL_TIMEOUT", 20)

    # Deadlines (README "Security"). An HTTP connection idle between requests is closed after
    # HTTP_IDLE_TIMEOUT s; its request line and headers must arrive within HTTP_HEADER_TIMEOUT s;
    # any single read or write that waits longer than HTTP_SOCKET_TIMEOUT s ends it (more than
    # Engine.IO's ping interval + timeout, so a live websocket never trips it).
    HTTP_IDLE_TIMEOUT = _env_int("HTTP_IDLE_TIMEOUT", 75)
    HTTP_HEADER_TIMEOUT = _env_int("HTTP_HEADER_TIMEOUT", 20)
    HTTP_SOCKET_TIMEOUT = _env_int("HTTP_SOCKET_TIMEOUT", 60)
    # Seconds an Engine.IO session may stay open without a Socket.IO connect (Node's default).
    SOCKETIO_CONNECT_TIMEOUT = _env_int("SOCKETIO_CONNECT_TIMEOUT", 45)
    # Engine.IO's heartbeat: a PING every SOCKETIO_PING_INTERVAL s; a socket whose PONG does not
    # come within SOCKETIO_PING_TIMEOUT s is closed (the library's defaults, as Node's).
    SOCKETIO_PING_INTERVAL = _env_int("SOCKETIO_PING_INTERVAL", 25)
    SOCKETIO_PING_TIMEOUT = _env_int("SOCKETIO_PING_TIMEOUT", 20)
    # Websocket compression (permessage-deflate), off as in Node's Socket.IO: with it, each
    # socket of a client that offers it (every browser) keeps zlib contexts, about 90 KiB.
    # When on, messages under the threshold (bytes) still go uncompressed.
    WEBSOCKET_COMPRESSION = _env_int("WEBSOCKET_COMPRESSION", 0) != 0
    WEBSOCKET_COMPRESSION_THRESHOLD = _env_int("WEBSOCKET_COMPRESSION_THRESHOLD", 1024)

    # Rate limits, in Flask-Limiter's notation ("20/second;600/minute"); an empty value turns
    # one off. With SOCKETIO_MESSAGE_QUEUE they are counted in that Redis, shared by every
    # process; RATE_LIMIT_STORAGE_URI names another store. README "Rate limits" says what
    # each protects against and when to change it.
    RATE_LIMIT_STORAGE_URI = os.environ.get("RATE_LIMIT_STORAGE_URI") or SOCKETIO_MESSAGE_QUEUE or "memory://"
    # Per client address: failed authentications (REST 401s and refused socket connects).
    # Over it, the address's requests and connects without a valid token are refused (429);
    # a valid token is never refused for them.
    RATE_LIMIT_AUTH_FAILURES = os.environ.get("RATE_LIMIT_AUTH_FAILURES", "30/minute")
    # Per user: calls to the user's REST routes.
    RATE_LIMIT_USER = os.environ.get("RATE_LIMIT_USER", "100/second")
    # Per admin (`sub`): POST /v1/admin/notifications. Above what one process serves, so a
    # producer is paced by the answers, not refused; it caps one token's share of a cluster.
    RATE_LIMIT_ADMIN = os.environ.get("RATE_LIMIT_ADMIN", "1000/second")
    # Per user: Socket.IO connects (MAX_SOCKETS_PER_USER tabs reconnecting at once fit).
    RATE_LIMIT_SOCKET_CONNECT = os.environ.get("RATE_LIMIT_SOCKET_CONNECT", "50/second;600/minute")
    # Per socket: events the client sends; over it, the socket is disconnected.
    RATE_LIMIT_SOCKET_EVENTS = os.environ.get("RATE_LIMIT_SOCKET_EVENTS", "20/second;300/minute")
    # Reverse proxies in front that set X-Forwarded-For (1 behind the nginx of deploy/);
    # 0 trusts no such header, and every client is known by its TCP peer address.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)

    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 4 * 1024 * 1024)
    MAX_RECIPIENTS = _env_int("MAX_RECIPIENTS", 10_000)
    # Subscribers per batch of a topic send: each batch its own transaction and emits. 0: 5,000
    # on PostgreSQL, 1,000 on SQLite (whose writes hold the whole process while they run).
    TOPIC_SEND_BATCH = _env_int("TOPIC_SEND_BATCH", 0)
    MAX_MESSAGE_LENGTH = _env_int("MAX_MESSAGE_LENGTH", 2_000)
    # Bytes of a notification's `data` object, as compact UTF-8 JSON.
    MAX_DATA_BYTES = _env_int("MAX_DATA_BYTES", 4096)
    # Hours an Idempotency-Key's first answer is replayed.
    IDEMPOTENCY_KEY_HOURS = _env_int("IDEMPOTENCY_KEY_HOURS", 24)
    # Seconds a request waits for a concurrent one with the same Idempotency-Key before 409.
    IDEMPOTENCY_WAIT_SECONDS = _env_int("IDEMPOTENCY_WAIT_SECONDS", 10)

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()

    # Operating it (README "Operating it"). Log lines as text (development) or one JSON
    # object per line (`json`, for a log shipper).
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
    # When set, GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    # The Socket.IO Admin UI (namespace /admin, page /admin-ui/): off unless a password is set.
    ADMIN_UI_USERNAME = os.environ.get("ADMIN_UI_USERNAME", "admin")
    ADMIN_UI_PASSWORD = os.environ.get("ADMIN_UI_PASSWORD") or None
    # `development`: every socket and event (costs on every connect and emit); `production`: counts.
    ADMIN_UI_MODE = os.environ.get("ADMIN_UI_MODE", "development").strip().lower()
    # 0 lets the UI disconnect sockets, move them between rooms and emit events.
    ADMIN_UI_READ_ONLY = _env_int("ADMIN_UI_READ_ONLY", 1) != 0

    PUBLIC_DIR = BASE_DIR / "public"
    MIGRATIONS_DIR = BASE_DIR / "migrations"


class DevelopmentConfig(Config):
    """The embedded default: SQLite, one process, development secret allowed."""


class TestingConfig(Config):
    """Tests: the fixtures set a temporary database per test; no message queue."""

    ENV_NAME = "testing"
    TESTING = True
    SOCKETIO_ASYNC_MODE = "threading"
    SOCKETIO_MESSAGE_QUEUE = None
    SQLALCHEMY_DATABASE_URI = "sqlite://"


class ProductionConfig(Config):
    """Production: refuses to start with the development secret (checked by the factory)."""

    ENV_NAME = "production"


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    """The config class named by APP_ENV (development by default)."""
    name = os.environ.get("APP_ENV", "development").lower()
    if name not in CONFIGS:
        raise RuntimeError(f"APP_ENV must be one of {sorted(CONFIGS)}, got {name!r}")
    return CONFIGS[name]
