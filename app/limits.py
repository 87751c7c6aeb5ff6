"""Rate limits: Flask-Limiter on the REST routes, the same counters for Socket.IO connects.

Counted per client address (failed authentications), per user or admin `sub`
(REST calls, socket connects) and per socket (events a client sends). A valid token is
never refused for other requests' failures: an address over its failure limit has only
its failing requests and connects refused, each after one signature check. The counters
live in RATE_LIMIT_STORAGE_URI: Redis, shared by every process, when a message
queue is configured; this process's memory otherwise. When that store fails, the
limits are not applied rather than refusing everyone (Flask-Limiter's in-memory
fallback). Settings: config.py; README "Security".
"""

import logging
import math
import time

from flask import Blueprint, Flask, g, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many, storage, strategies

from app.auth import AuthError, Identity, bearer_token, identity_from_token
from app.errors import error_response

log = logging.getLogger(__name__)

AUTH_FAILURES_SCOPE = "auth-failures"
KEY_PREFIX = "notifications:ratelimit"
STRATEGY = "sliding-window-counter"
ADMIN_ENDPOINTS = frozenset({"notifications.create_notifications"})


def client_address() -> str:
    """The client's address (the proxy's own unless TRUSTED_PROXIES says how many to trust)."""
    return request.remote_addr or "unknown"


def request_identity() -> Identity | None:
    """Who the request's bearer token speaks for when it is valid, else None (verified once)."""
    if "bearer_identity" not in g:
        identity = None
        token = bearer_token(request.headers.get("Authorization"))
        if token:
            try:
                identity = identity_from_token(token)
            except AuthError:
                pass
        g.bearer_identity = identity
    return g.bearer_identity


def caller_key() -> str:
    """The token's `sub` (the per-user and per-admin limits apply to valid tokens only)."""
    identity = request_identity()
    return "sub:" + identity.user_id if identity else "address:" + client_address()


def has_valid_token() -> bool:
    """Whether the request carries a valid token: then no failure of others can refuse it."""
    return request_identity() is not None


def _items(value: str) -> list[RateLimitItem]:
    return parse_many(value) if value and value.strip() else []


class RateLimits:
    """The rate limits of one app: Flask-Limiter for HTTP, checks for the Socket.IO handlers."""

    def __init__(self, app: Flask):
        self._config = config = app.config
        app.config.setdefault("RATELIMIT_STORAGE_URI", config["RATE_LIMIT_STORAGE_URI"])
        app.config.setdefault("RATELIMIT_STRATEGY", STRATEGY)
        app.config.setdefault("RATELIMIT_KEY_PREFIX", KEY_PREFIX)
        app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
        self.breaches = BreachLog()
        self.http = Limiter(client_address, app=app, on_breach=self._remember_reset)
        logging.getLogger("flask-limiter").setLevel(logging.WARNING)
        self.auth_failures = _items(config["RATE_LIMIT_AUTH_FAILURES"])
        self.socket_connects = _items(config["RATE_LIMIT_SOCKET_CONNECT"])
        self.socket_events = _items(config["RATE_LIMIT_SOCKET_EVENTS"])
        # Events of one socket are counted where the socket lives: in this process.
        self._local = strategies.STRATEGIES[STRATEGY](storage.MemoryStorage())
        app.register_error_handler(RateLimitExceeded, _too_many_requests)

    def limit_api(self, bp: Blueprint) -> None:
        """Apply the REST limits to every route of `bp` (the /v1 API); an empty setting adds none."""
        config = self._config
        if config["RATE_LIMIT_AUTH_FAILURES"]:
            # Only answers that refused the token count; over the limit, a request without a
            # valid token is refused before its view runs. A valid token is exempt: the
            # address may be a NAT or a proxy shared with whoever sends the bad ones.
            self.http.shared_limit(
                config["RATE_LIMIT_AUTH_FAILURES"],
                scope=AUTH_FAILURES_SCOPE,
                key_func=client_address,
                deduct_when=lambda response: response.status_code == 401,
                exempt_when=has_valid_token,
            )(bp)
        if config["RATE_LIMIT_USER"]:
            self.http.shared_limit(
                config["RATE_LIMIT_USER"],
                scope="user",
                key_func=caller_key,
                # without a valid token a request is a failure, counted by the limit above
                exempt_when=lambda: request.endpoint in ADMIN_ENDPOINTS or not has_valid_token(),
            )(bp)
        if config["RATE_LIMIT_ADMIN"]:
            self.http.shared_limit(
                config["RATE_LIMIT_ADMIN"],
                scope="admin",
                key_func=caller_key,
                exempt_when=lambda: request.endpoint not in ADMIN_ENDPOINTS or not has_valid_token(),
            )(bp)

    # ---- Socket.IO ---------------------------------------------------------------------

    def _shared(self, items, *keys, hit: bool) -> float | None:
        """Hit (or only test) `items` for `keys` in the shared store; seconds to wait when over."""
        limiter = self.http.limiter
        args = [KEY_PREFIX, *keys]
        try:
            for item in items:
                allowed = limiter.hit(item, *args) if hit else limiter.test(item, *args)
                if not allowed:
                    reset_at, _remaining = limiter.get_window_stats(item, *args)
                    return max(1.0, math.ceil(reset_at - time.time()))
        except Exception:  # noqa: BLE001  (the store is down: do not refuse everyone)
            log.warning("rate limit store unreachable: socket limits not applied", exc_info=True)
        return None

    def auth_failed(self, address: str) -> float | None:
        """Count one failed authentication of `address` (shared with the REST routes).

        Returns the seconds until `address` is under its limit again when it is over it,
        else None.
        """
        wait = self._shared(self.auth_failures, address, AUTH_FAILURES_SCOPE, hit=True)
        if wait:
            key = self.auth_failures[0].key_for(KEY_PREFIX, address, AUTH_FAILURES_SCOPE)
            self.breaches.note(key, time.time() + wait)
        return wait

    def socket_connect(self, user_id: str) -> float | None:
        """Count a connect of `user_id`; seconds to wait when over the limit."""
        return self._shared(self.socket_connects, "sub:" + user_id, "socket-connect", hit=True)

    def socket_event(self, sid: str) -> bool:
        """Count an event from socket `sid`; False when it is over its limit."""
        return all(self._local.hit(item, "socket-event", sid) for item in self.socket_events)

    def _remember_reset(self, limit: RequestLimit) -> None:
        """Keep when the breached window frees up, for the 429's Retry-After; log the breach once.

        The exact time, not `limit.reset_at`: that one is rounded up a whole second, which made a
        one-minute window answer `Retry-After: 61`.
        """
        reset_time = limit.window.reset_time
        g.rate_limit_reset_at = max(getattr(g, "rate_limit_reset_at", 0), reset_time)
        self.breaches.note(limit.key, reset_time)


class BreachLog:
    """Logs the first refusal of each key in each window, not every refused request.

    A client over a limit may keep sending hundreds of requests a second; one line per
    window says what is refused and for how long, at the cost of a dict look-up.
    """

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._logged_until: dict[str, float] = {}

    def note(self, key: str, reset_time: float) -> None:
        now = time.time()
        if self._logged_until.get(key, 0.0) > now:
            return
        if len(self._logged_until) >= self.MAX_KEYS:
            self._logged_until = {k: t for k, t in self._logged_until.items() if t > now}
        self._logged_until[key] = max(reset_time, now + 1.0)
        log.warning(BREACH_LOG, key, max(1, math.ceil(reset_time - now)), extra={"limit_key": key})


# Flask-Limiter's own line for every refused request is left out (its logger at WARNING).
BREACH_LOG = "rate limit exceeded for %s: its requests over the limit are refused for %s s"


def _too_many_requests(exc: RateLimitExceeded):
    retry_after = max(1, math.ceil(getattr(g, "rate_limit_reset_at", time.time() + 1) - time.time()))
    response, status = error_response(
        429, "too_many_requests", f"Rate limit exceeded ({exc.description}); retry in {retry_after} s."
    )
    response.status_code = status
    response.headers["Retry-After"] = str(retry_after)
    return response
