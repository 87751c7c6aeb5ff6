"""The eventlet server of `python wsgi.py`: listening, background tasks, graceful stop."""

import gc
import logging
import os
import resource
import signal
import socket

import greenlet
from flask import Flask

from app import metrics
from app.extensions import socketio
from app.realtime.queue import ListeningRedisManager
from app.services.delivery import presence_tick, sweep_unconfirmed
from app.services.presence import get_presence

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.1
# Bytes of each connection's HTTP write buffer (eventlet's default: 16 KiB, allocated for the
# connection's life; a websocket writes its frames to the socket itself and never uses it).
HTTP_WRITE_BUFFER = 2048
# Allocations before a young collection; young collections before a middle one; middle
# collections before a full one (CPython's defaults: 700, 10, 10). See serve().
GC_THRESHOLDS = (700, 10, 100)
RETRY_REGISTER_SECONDS = 0.2


def _heartbeat_loop(app: Flask, interval: float) -> None:
    with app.app_context():
        presence = get_presence()
    while True:
        with app.app_context():
            try:
                presence_tick()
            except Exception:  # noqa: BLE001  (log and keep beating)
                log.exception("presence heartbeat failed")
        # Until registered (start-up, after an outage), retry soon rather than in a full interval.
        socketio.sleep(interval if presence.in_sync else min(interval, RETRY_REGISTER_SECONDS))


def _sweep_loop(app: Flask, interval: float) -> None:
    while True:
        socketio.sleep(interval)
        with app.app_context():
            try:
                metrics.RESENT_UNCONFIRMED.inc(sweep_unconfirmed())
            except Exception:  # noqa: BLE001  (log and keep sweeping)
                log.exception("delivery sweep failed")


def start_background_tasks(app: Flask) -> None:
    """Subscribe to the message queue, start the presence heartbeat (multi-process only) and the
    sweeper of unconfirmed deliveries."""
    manager = socketio.server.manager
    if isinstance(manager, ListeningRedisManager):
        manager.start_listening()
    with app.app_context():
        shared = get_presence().shared
    if shared:
        socketio.start_background_task(_heartbeat_loop, app, app.config["PRESENCE_TTL"] / 3)
    socketio.start_background_task(_sweep_loop, app, max(1.0, app.config["DELIVERY_CONFIRM_TIMEOUT"] / 3))


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


def deadline_protocol(idle_timeout: float, header_timeout: float) -> type:
    """eventlet's HTTP protocol with a deadline on each request's line and headers.

    eventlet's own timeouts apply to each read alone: a client that sends a byte of
    its headers every few seconds would hold its connection (and a slot of
    MAX_CONNECTIONS) for ever. Here the request line must be complete within
    idle + header timeout of the previous request (or of the connect), and the
    headers within the header timeout after it; past that, the connection is
    closed as eventlet closes a timed-out one. The body and the response (a long
    poll, a websocket) have no overall deadline, only the per-read socket timeout.
    """

    import eventlet
    import eventlet.wsgi

    class DeadlineHttpProtocol(eventlet.wsgi.HttpProtocol):
        wbufsize = HTTP_WRITE_BUFFER

        def setup(self):
            # Small writes leave at once, as in Node: a response larger than the write buffer
            # goes out in two sends, and the second must not wait for the first's ACK.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().setup()

        def _read_request_line(self):  # eventlet's (private) read of the request line
            with eventlet.Timeout(idle_timeout + header_timeout, TimeoutError("no request in time")):
                return super()._read_request_line()

        def parse_request(self):
            with eventlet.Timeout(header_timeout, TimeoutError("headers not complete in time")):
                return super().parse_request()

    return DeadlineHttpProtocol


def serve(app: Flask) -> None:
    """Serve on HOST:PORT until SIGTERM/SIGINT, then stop gracefully.

    On a stop signal: stop accepting connections, close every Socket.IO connection
    (clients reconnect, to another process behind a load balancer), take this
    process out of presence, let in-flight requests finish, then exit.
    A second signal, or GRACEFUL_TIMEOUT seconds, ends it at once.
    """
    import eventlet
    import eventlet.event
    import eventlet.wsgi

    host, port = app.config["HOST"], app.config["PORT"]
    raise_file_limit(app.config["MAX_CONNECTIONS"])
    family = eventlet.green.socket.getaddrinfo(host, port)[0][0]
    listener = eventlet.listen((host, port), family=family, backlog=app.config["LISTEN_BACKLOG"])
    stopping: list[int] = []
    accept_loop = greenlet.getcurrent()

    drained = eventlet.event.Event()

    def drain() -> None:
        listener.close()  # new connections are refused (a load balancer tries another process)
        # Engine.IO close: clients reconnect by themselves. Each disconnect handler puts back
        # to PENDING what its socket never acknowledged, so this comes before leaving presence.
        eio = socketio.server.eio
        for connection in list(eio.sockets.values()):
            # without waiting for the writer to flush (eio.disconnect() can block there)
            connection.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
        with app.app_context():
            get_presence().close()
        # What this process's sockets acknowledged, or its plain sockets were sent, is recorded.
        try:
            app.extensions["confirmations"].flush()
        except Exception:  # noqa: BLE001  (the sweeper of another process will decide)
            log.exception("could not write delivery confirmations while stopping")
        drained.send()

    def give_up() -> None:
        eventlet.sleep(app.config["GRACEFUL_TIMEOUT"])
        log.error("still stopping after %ss; exiting anyway", app.config["GRACEFUL_TIMEOUT"])
        os._exit(1)

    def watch_for_stop() -> None:
        # The signal handler runs in whichever green thread was running when the signal
        # came (a request, a connect handler...), so it only sets a flag; this green
        # thread acts on it.
        while not stopping:
            eventlet.sleep(STOP_POLL_SECONDS)
        log.info("received %s: stopping gracefully", signal.Signals(stopping[0]).name)
        eventlet.spawn_n(give_up)
        eventlet.spawn_n(drain)
        # Ends eventlet's accept loop, which then waits for the running requests.
        eventlet.kill(accept_loop, SystemExit(0))

    def on_signal(signum, _frame) -> None:
        if stopping:
            os._exit(1)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    eventlet.spawn_n(watch_for_stop)
    start_background_tasks(app)
    # A full garbage collection walks every tracked object and blocks the process, for
    # longer the more connections it holds. CPython runs one after every 10 middle-generation
    # collections while the heap grows by a quarter, so every connection ramp paid a dozen
    # of them; after 100, a handful (bench/README.md, "Measurements behind the code").
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("serving on http://%s:%s (pid %s)", host, port, os.getpid())
    eventlet.wsgi.server(
        listener,
        app,
        max_size=app.config["MAX_CONNECTIONS"],
        log_output=False,
        # Idle keep-alive connections close; one read or write waits at most this long.
        keepalive=app.config["HTTP_IDLE_TIMEOUT"],
        socket_timeout=app.config["HTTP_SOCKET_TIMEOUT"],
        protocol=deadline_protocol(app.config["HTTP_IDLE_TIMEOUT"], app.config["HTTP_HEADER_TIMEOUT"]),
        debug=False,  # eventlet's default sends tracebacks to clients on errors
    )
    drained.wait()  # the sockets closed and presence left, not only the requests done
    log.info("stopped")
