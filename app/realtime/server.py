"""The eventlet server of `python wsgi.py`: listening, background tasks, graceful stop."""

import gc
import logging
import os
import resource
import signal

import greenlet
from flask import Flask

from app import metrics
from app.delivery import Delivery
from app.extensions import jwt, socketio
from app.realtime.patches import APPLIED_LOG, eventlet_websocket, in_effect
from app.realtime.patches.eventlet import deadline_protocol
from app.realtime.queue import ListeningRedisManager
from app.services import delivery as current

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.1
# Allocations before a young collection; young collections before a middle one; middle
# collections before a full one (CPython's defaults: 700, 10, 10). See serve().
GC_THRESHOLDS = (700, 10, 100)
RETRY_REGISTER_SECONDS = 0.2


def _heartbeat_loop(app: Flask, delivery: Delivery, interval: float) -> None:
    while True:
        with app.app_context():
            try:
                delivery.sweeper.tick()
            except Exception:  # noqa: BLE001  (log and keep beating)
                log.exception("presence heartbeat failed")
        # Until registered (start-up, after an outage), retry soon rather than in a full interval.
        socketio.sleep(interval if delivery.presence.in_sync else min(interval, RETRY_REGISTER_SECONDS))


def _sweep_loop(app: Flask, delivery: Delivery, interval: float) -> None:
    while True:
        socketio.sleep(interval)
        with app.app_context():
            try:
                metrics.RESENT_UNCONFIRMED.inc(delivery.sweeper.sweep())
            except Exception:  # noqa: BLE001  (log and keep sweeping)
                log.exception("delivery sweep failed")


def start_background_tasks(app: Flask) -> None:
    """Subscribe to the message queue, start the presence heartbeat (multi-process only) and the
    sweeper of unconfirmed deliveries."""
    manager = socketio.server.manager
    if isinstance(manager, ListeningRedisManager):
        manager.start_listening()
    with app.app_context():
        delivery = current.current()
    if delivery.presence.shared:
        socketio.start_background_task(_heartbeat_loop, app, delivery, app.config["PRESENCE_TTL"] / 3)
    interval = max(1.0, app.config["DELIVERY_CONFIRM_TIMEOUT"] / 3)
    socketio.start_background_task(_sweep_loop, app, delivery, interval)


def raise_file_limit(connections: int) -> None:
    """Let this process open a file per connection it may serve, plus some (up to the hard limit)."""
    wanted = connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < connections:
        log.warning(
            "open file limit %s is below MAX_CONNECTIONS (%s): raise it (ulimit -n, LimitNOFILE)",
            soft,
            connections,
        )


class GracefulStop:
    """What a stop signal sets off: drain the sockets, leave presence, end the accept loop.

    The signal handler runs in whichever green thread was running when the signal came (a
    request, a connect handler...), so it only sets a flag; `watch` acts on it.
    """

    def __init__(self, app: Flask, listener) -> None:
        import eventlet.event

        self.app = app
        self.listener = listener
        self.signals: list[int] = []
        self.accept_loop = greenlet.getcurrent()
        self.drained = eventlet.event.Event()

    def on_signal(self, signum, _frame) -> None:
        if self.signals:
            os._exit(1)
        self.signals.append(signum)

    def watch(self) -> None:
        import eventlet

        while not self.signals:
            eventlet.sleep(STOP_POLL_SECONDS)
        log.info("received %s: stopping gracefully", signal.Signals(self.signals[0]).name)
        eventlet.spawn_n(self.give_up)
        eventlet.spawn_n(self.drain)
        # Ends eventlet's accept loop, which then waits for the running requests.
        eventlet.kill(self.accept_loop, SystemExit(0))

    def drain(self) -> None:
        self.listener.close()  # new connections are refused (a load balancer tries another process)
        # Engine.IO close: clients reconnect by themselves. Each disconnect handler puts back
        # to PENDING what its socket never acknowledged, so this comes before leaving presence.
        eio = socketio.server.eio
        for connection in list(eio.sockets.values()):
            # without waiting for the writer to flush (eio.disconnect() can block there)
            connection.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
        with self.app.app_context():
            delivery = current.current()
            # What this process's sockets acknowledged, or its plain sockets were sent, is
            # recorded; what they left unacknowledged goes back without waiting out its grace.
            try:
                delivery.put_back.waiting_now()
                delivery.confirmations.flush()
            except Exception:  # noqa: BLE001  (the sweeper of another process will decide)
                log.exception("could not write delivery confirmations while stopping")
        delivery.presence.close()
        self.drained.send()

    def give_up(self) -> None:
        import eventlet

        eventlet.sleep(self.app.config["GRACEFUL_TIMEOUT"])
        log.error("still stopping after %ss; exiting anyway", self.app.config["GRACEFUL_TIMEOUT"])
        os._exit(1)


def serve(app: Flask) -> None:
    """Serve on HOST:PORT until SIGTERM/SIGINT, then stop gracefully.

    On a stop signal: stop accepting connections, close every Socket.IO connection
    (clients reconnect, to another process behind a load balancer), take this
    process out of presence, let in-flight requests finish, then exit.
    A second signal, or GRACEFUL_TIMEOUT seconds, ends it at once.
    """
    import eventlet
    import eventlet.wsgi

    host, port = app.config["HOST"], app.config["PORT"]
    raise_file_limit(app.config["MAX_CONNECTIONS"])
    family = eventlet.green.socket.getaddrinfo(host, port)[0][0]
    listener = eventlet.listen((host, port), family=family, backlog=app.config["LISTEN_BACKLOG"])
    stop = GracefulStop(app, listener)
    signal.signal(signal.SIGTERM, stop.on_signal)
    signal.signal(signal.SIGINT, stop.on_signal)
    eventlet.spawn_n(stop.watch)
    start_background_tasks(app)
    # A full garbage collection walks every tracked object and blocks the process, for
    # longer the more connections it holds. CPython runs one after every 10 middle-generation
    # collections while the heap grows by a quarter, so every connection ramp paid a dozen
    # of them; after 100, a handful.
    gc.set_threshold(*GC_THRESHOLDS)
    applied = in_effect(app, socketio.server, jwt)
    applied += eventlet_websocket.in_effect(app.config["WEBSOCKET_COMPRESSION"])
    log.info(APPLIED_LOG, ", ".join(applied))
    log.info("serving on http://%s:%s (pid %s)", host, port, os.getpid())
    # MAX_CONNECTIONS counts HTTP requests in progress and open websockets (read from the hub).
    pool = eventlet_websocket.connection_pool(app.config["MAX_CONNECTIONS"])
    eventlet.wsgi.server(
        listener,
        app,
        custom_pool=pool,
        log_output=False,
        # Idle keep-alive connections close; one read or write waits at most this long.
        keepalive=app.config["HTTP_IDLE_TIMEOUT"],
        socket_timeout=app.config["HTTP_SOCKET_TIMEOUT"],
        protocol=deadline_protocol(app.config["HTTP_IDLE_TIMEOUT"], app.config["HTTP_HEADER_TIMEOUT"], pool),
        debug=False,  # eventlet's default sends tracebacks to clients on errors
    )
    stop.drained.wait()  # the sockets closed and presence left, not only the requests done
    log.info("stopped")
