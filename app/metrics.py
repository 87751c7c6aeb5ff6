"""Prometheus metrics of this process (prometheus_client): what they are, and the few hooks that feed them.

Every metric lives in prometheus_client's default registry, which also carries the
library's own `process_*` (CPU, memory, open files) and `python_*` collectors. Each
process exposes its own at GET /metrics (app/api/ops.py); Prometheus scrapes every
process and sums across them (README, "Operating it").

The counters are incremented where things happen (socket handlers, the transport, the
delivery core, presence); label values that occur on hot paths are resolved once here, so
an update there is one `inc()` or `observe()`, small next to the server work of a send
(bench/README.md has the measurement).
"""

import time
from datetime import datetime

from flask import Flask, request
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.engine import Engine

NAMESPACE = "notifications"

SOCKETS_CONNECTED = Gauge(
    "sockets_connected", "Socket.IO connections of this process, authenticated", namespace=NAMESPACE
)
USERS_ONLINE = Gauge("users_online", "Users with at least one socket on this process", namespace=NAMESPACE)

CONNECTS = Counter("socket_connects", "Socket.IO connects accepted", namespace=NAMESPACE)
REFUSED = Counter(
    "socket_connects_refused", "Socket.IO connects refused, by reason", ["reason"], namespace=NAMESPACE
)
# Reasons of a refused connect (label values of REFUSED).
REFUSED_AUTH_BLOCKED = "auth_failures"  # the address is over RATE_LIMIT_AUTH_FAILURES
REFUSED_UNAUTHORIZED = "unauthorized"  # no token, or not an acceptable one
REFUSED_RATE_LIMITED = "rate_limited"  # the user is over RATE_LIMIT_SOCKET_CONNECT
REFUSED_TOO_MANY_SOCKETS = "too_many_sockets"  # the user holds MAX_SOCKETS_PER_USER
REFUSED_DATABASE = "database_error"

CREATED = Counter(
    "created",
    "Notifications created, by the status the creator was answered (DELIVERED: sent live)",
    ["status"],
    namespace=NAMESPACE,
)
SENT = Counter(
    "sent",
    "Notification sends to sockets of this process: new_notification (live) or pending_notifications",
    ["kind"],
    namespace=NAMESPACE,
)
SENT_LIVE = SENT.labels("live")
SENT_PENDING = SENT.labels("pending")
ACKNOWLEDGED = Counter(
    "acknowledged",
    "Notifications acknowledged by an acknowledging socket of this process",
    namespace=NAMESPACE,
)
REQUEUED = Counter(
    "requeued",
    "Notifications put back to PENDING, by cause: socket_closed (closed with unacknowledged sends), "
    "unconfirmed (past DELIVERY_CONFIRM_TIMEOUT), user_left (before the emit)",
    ["cause"],
    namespace=NAMESPACE,
)
RESENT = Counter(
    "resent",
    "Notifications sent again at once after a requeue (to another socket of the user, or by the sweeper)",
    ["cause"],
    namespace=NAMESPACE,
)
REQUEUED_SOCKET_CLOSED = REQUEUED.labels("socket_closed")
REQUEUED_UNCONFIRMED = REQUEUED.labels("unconfirmed")
REQUEUED_USER_LEFT = REQUEUED.labels("user_left")
RESENT_SOCKET_CLOSED = RESENT.labels("socket_closed")
RESENT_UNCONFIRMED = RESENT.labels("unconfirmed")

# From the notification's creation to the acknowledgement: milliseconds when live, up to
# the time the user was away when it waited as pending.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
DELIVERY_LATENCY = Histogram(
    "delivery_latency_seconds",
    "Seconds from a notification's creation to its acknowledgement, by how it was sent",
    ["kind"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
LATENCY_LIVE = DELIVERY_LATENCY.labels("live")
LATENCY_PENDING = DELIVERY_LATENCY.labels("pending")

HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP requests answered by the app (Socket.IO transport requests excluded), by route and status",
    ["method", "route", "status"],
    namespace=NAMESPACE,
)
UNMATCHED_ROUTE = "unmatched"  # route label of a request no rule matched (404, 405)

DATABASE_ERRORS = Counter("database_errors", "Errors raised by the database driver", namespace=NAMESPACE)
REDIS_ERRORS = Counter(
    "redis_errors",
    "Failed Redis calls, by component (presence, message_queue)",
    ["component"],
    namespace=NAMESPACE,
)
REDIS_ERRORS_PRESENCE = REDIS_ERRORS.labels("presence")
REDIS_ERRORS_QUEUE = REDIS_ERRORS.labels("message_queue")

_START = "notifications.metrics.start"  # the request's start time, in its WSGI environ


def notifications_created(delivered: int, pending: int) -> None:
    """A create stored `delivered` notifications sent live and `pending` ones."""
    CREATED.labels("DELIVERED").inc(delivered)
    CREATED.labels("PENDING").inc(pending)


def acknowledged(created_at: list[str], live: bool) -> None:
    """A socket acknowledged notifications created at these wire times (ISO 8601, ending in Z)."""
    ACKNOWLEDGED.inc(len(created_at))
    now = time.time()
    latency = LATENCY_LIVE if live else LATENCY_PENDING
    for stamp in created_at:
        latency.observe(max(0.0, now - datetime.fromisoformat(stamp).timestamp()))


def init_app(app: Flask) -> None:
    """Time every request the app answers, and count the database's errors (once per process)."""
    app.before_request(_start_timer)
    app.after_request(_observe_request)
    if not event.contains(Engine, "handle_error", _count_database_error):
        event.listen(Engine, "handle_error", _count_database_error)


def _start_timer() -> None:
    request.environ[_START] = time.perf_counter()


def _observe_request(response):
    started = request.environ.get(_START)
    if started is not None:
        rule = request.url_rule
        HTTP_DURATION.labels(
            request.method, rule.rule if rule is not None else UNMATCHED_ROUTE, response.status_code
        ).observe(time.perf_counter() - started)
    return response


def _count_database_error(_context) -> None:
    DATABASE_ERRORS.inc()


def sample_presence(local_sockets: list[tuple[str, str]]) -> None:
    """Set the gauges from this process's sockets, as (sid, user id) pairs (at scrape time)."""
    SOCKETS_CONNECTED.set(len(local_sockets))
    USERS_ONLINE.set(len({user_id for _sid, user_id in local_sockets}))
