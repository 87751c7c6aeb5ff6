"""The application factory."""

import logging
import os
import time

from flask import Flask
from flask_cors import CORS
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from werkzeug.middleware.proxy_fix import ProxyFix

from app import jsonfast, metrics
from app.api.notifications import bp as notifications_bp
from app.api.ops import bp as ops_bp
from app.api.site import bp as site_bp
from app.api.topics import bp as topics_bp
from app.auth import init_jwt
from app.cli import register_commands
from app.delivery import Confirmations, Delivery
from app.delivery.fanout import Fanout
from app.errors import register_error_handlers
from app.extensions import db, jwt, migrate, socketio
from app.limits import RateLimits
from app.logs import log_handler
from app.realtime import patches
from app.realtime.admin_ui import init_admin_ui
from app.realtime.deadlines import ConnectDeadline, Deadlines, TokenExpiry
from app.realtime.handlers import register_events
from app.realtime.queue import ListeningRedisManager
from app.realtime.transport import QueueTransport, TrackingManager, Transport
from app.services.presence import make_presence
from app.services.store import NotificationStore
from config import DEV_JWT_SECRET, Config, config_from_env


def create_app(config: type[Config] | None = None, **overrides) -> Flask:
    """Build the app: extensions, routes, Socket.IO handlers and CLI commands."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.json = jsonfast.FastJSONProvider(app)
    app.config.from_object(config or config_from_env())
    app.config.update(overrides)
    check_config(app)
    configure_logging(app)
    warn_about_config(app)
    metrics.init_app(app)  # first, so that its request timer starts before any other hook
    register_extensions(app)
    register_blueprints(app)
    init_admin_ui(app)  # before the socket guards, which wrap what it installs
    register_socket_guards(app)
    register_error_handlers(app)
    register_events(app)
    register_commands(app)
    return app


def check_config(app: Flask) -> None:
    """Refuse to run production with settings that are only safe on a laptop."""
    if app.config["ENV_NAME"] == "production" and app.config["JWT_SECRET_KEY"] == DEV_JWT_SECRET:
        raise RuntimeError("JWT_SECRET_KEY must be set to a secret value in production")
    if app.config["ENV_NAME"] == "production" and len(app.config["JWT_SECRET_KEY"]) < 32:
        raise RuntimeError("JWT_SECRET_KEY must be at least 32 characters in production")


def warn_about_config(app: Flask) -> None:
    """Log the settings that work against each other (they may be meant, as in tests)."""
    heartbeat = app.config["SOCKETIO_PING_INTERVAL"] + app.config["SOCKETIO_PING_TIMEOUT"]
    if heartbeat >= app.config["HTTP_SOCKET_TIMEOUT"]:
        # an idle websocket waits that long for its next frame: the read deadline ends it first
        logging.getLogger("app").warning(
            "SOCKETIO_PING_INTERVAL + SOCKETIO_PING_TIMEOUT (%s s) is not less than HTTP_SOCKET_TIMEOUT "
            "(%s s): idle websockets will be closed by the read deadline",
            heartbeat,
            app.config["HTTP_SOCKET_TIMEOUT"],
        )


def configure_logging(app: Flask) -> None:
    """Log to stderr with timestamps, at LOG_LEVEL."""
    # No format shows a thread: under eventlet they are green threads of one OS thread, and
    # naming one (eventlet's threading.current_thread) was two thirds of a log record's cost.
    logging.logThreads = logging.logMultiprocessing = False
    # Nor where a line was logged from: finding it walks the stack for every record (the
    # logging HOWTO's "Optimization": records then carry no file, line or function).
    logging._srcfile = None
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=app.config["LOG_LEVEL"],
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            handlers=[log_handler(app)],  # LOG_FORMAT=json: its own formatter
        )
    logging.getLogger("app").setLevel(app.config["LOG_LEVEL"])


def register_extensions(app: Flask) -> None:
    """Bind the extension instances to `app`."""
    # The default SQLite file lives in instance/.
    os.makedirs(app.instance_path, exist_ok=True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "pool_size": app.config["DB_POOL_SIZE"],
            "max_overflow": app.config["DB_MAX_OVERFLOW"],
            "pool_timeout": app.config["DB_POOL_TIMEOUT"],
        }
    db.init_app(app)
    with app.app_context():
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_write_ahead_log)
        else:
            event.listen(db.engine.pool, "checkin", _note_checkin)
            event.listen(db.engine.pool, "checkout", _ping_if_idle)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]))
    init_jwt(app)
    queue_url = app.config["SOCKETIO_MESSAGE_QUEUE"]
    manager = ListeningRedisManager(queue_url, channel="notifications") if queue_url else TrackingManager()
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        cors_allowed_origins=app.config["CORS_ALLOWED_ORIGINS"],
        logger=False,
        engineio_logger=False,
        client_manager=manager,
        json=jsonfast,
        ping_interval=app.config["SOCKETIO_PING_INTERVAL"],
        ping_timeout=app.config["SOCKETIO_PING_TIMEOUT"],
    )
    if app.config["CORS_ALLOWED_ORIGINS"]:
        CORS(app, origins=app.config["CORS_ALLOWED_ORIGINS"], expose_headers=["Link"])
    if app.config["TRUSTED_PROXIES"]:
        # Outermost, so that Engine.IO's environ (the socket handlers' remote_addr) has it too.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    register_delivery(app, manager if queue_url else None)
    app.extensions["rate_limits"] = RateLimits(app)


def register_delivery(app: Flask, queue: ListeningRedisManager | None) -> None:
    """Wire the delivery core once: the store, presence, the transport, batched confirmations."""
    if queue is None:
        presence, transport = make_presence(app.config), Transport(socketio.server)
    else:
        presence = make_presence(app.config, listening=lambda: queue.listening, channels=queue)
        transport = QueueTransport(socketio.server)
    store = NotificationStore()

    def confirm(notification_ids: list[str]) -> int:
        with app.app_context():
            return store.confirm(notification_ids)

    def later(seconds: float, task) -> None:
        def run() -> None:
            socketio.sleep(seconds)
            with app.app_context():
                task()

        socketio.start_background_task(run)

    confirmations = Confirmations(confirm, socketio.start_background_task, socketio.sleep)
    delivery = Delivery(store, presence, transport, confirmations, app.config, later)
    socketio.server.manager.tracker = delivery.tracker
    app.extensions["delivery"] = delivery
    app.extensions["fanout"] = Fanout(delivery, store, transport, topic_batch(app.config))


def topic_batch(config) -> int:
    """Subscribers per batch of a topic send: TOPIC_SEND_BATCH, else what suits the database."""
    if config["TOPIC_SEND_BATCH"] > 0:
        return config["TOPIC_SEND_BATCH"]
    return 5000 if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else 1000


# A pooled connection idle longer than this is tested before use (seconds).
PING_AFTER_IDLE = 1.0


def _note_checkin(_dbapi_connection, connection_record) -> None:
    connection_record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, connection_record, _connection_proxy) -> None:
    """Test a pooled connection that sat idle, as `pool_pre_ping` would test every one.

    The server may have closed it meanwhile (restart, idle timeout); the pool then opens
    another. A connection used a moment ago is not tested: `pool_pre_ping` cost a
    `SELECT 1` round trip per checkout, and the session checks out once per transaction
    (bench/README.md, "Measurements behind the code").
    """
    if time.monotonic() - connection_record.info.get("checked_in_at", 0.0) < PING_AFTER_IDLE:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()  # the driver began a transaction for it: hand the connection out idle
    except (dbapi_connection.OperationalError, dbapi_connection.InterfaceError) as exc:  # closed
        raise DisconnectionError(str(exc)) from exc


def _sqlite_write_ahead_log(dbapi_connection, _connection_record) -> None:
    """SQLite in WAL mode: a commit appends to one log file instead of writing a journal.

    Cheaper per commit than the default rollback journal, which creates, syncs and
    deletes a file each time (bench/README.md, "Measurements behind the code"), and
    readers no longer wait for a writer. `synchronous=FULL` keeps every commit durable across a power loss.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def register_blueprints(app: Flask) -> None:
    """Mount the REST API (rate limited) and the site routes (health, OpenAPI, browser client)."""
    app.extensions["rate_limits"].limit_api(notifications_bp)
    app.extensions["rate_limits"].limit_api(topics_bp)
    app.register_blueprint(notifications_bp)
    app.register_blueprint(topics_bp)
    app.register_blueprint(site_bp)
    app.register_blueprint(ops_bp)


def register_socket_guards(app: Flask) -> None:
    """Library corrections, per-socket event limits, connect and token-expiry deadlines."""
    server = socketio.server
    patches.apply(app, server, jwt, allow_event=app.extensions["rate_limits"].socket_event)
    deadlines = Deadlines(socketio.start_background_task, socketio.sleep)
    connect_deadline = ConnectDeadline(server, deadlines, app.config["SOCKETIO_CONNECT_TIMEOUT"])
    connect_deadline.install()
    app.extensions["connect_deadline"] = connect_deadline
    app.extensions["token_expiry"] = TokenExpiry(server, deadlines)
