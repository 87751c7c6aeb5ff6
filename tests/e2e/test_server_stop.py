"""SIGTERM on the real server: a running request finishes, a connecting socket loses nothing."""

import signal
import subprocess
import sys
from contextlib import contextmanager

import requests

from tests.support.clients import connect
from tests.support.server import STOP_TIMEOUT
from tests.support.tokens import bearer
from tests.support.waiting import in_background, wait_for

HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
"""


@contextmanager
def write_lock_elsewhere(db_path):
    """Hold SQLite's write lock from another process until the block ends.

    The server's next write then waits for it inside the SQLite driver (see `stuck`).
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def stuck(server) -> bool:
    """True while the server is waiting for the SQLite write lock.

    The SQLite driver blocks the whole eventlet process while it waits, so even
    `/healthz` (a read, which the lock does not block) goes unanswered.
    """
    try:
        requests.get(server.url + "/healthz", timeout=0.5)
    except requests.Timeout:
        return True
    return False


def test_sigterm_lets_a_running_request_finish(live_server):
    with write_lock_elsewhere(live_server.db_path):
        post = in_background(
            lambda: requests.post(
                live_server.url + "/v1/admin/notifications",
                json={"userIds": ["carol"], "message": "sent during a deploy"},
                headers=bearer(live_server.token("admin", admin=True)),
                timeout=30,
            )
        )
        wait_for(lambda: stuck(live_server), message="the request to be waiting to write")
        live_server.send_signal(signal.SIGTERM)
    post["thread"].join(timeout=30)

    exit_code = live_server.stop()
    stored = live_server.rows("SELECT status FROM notifications WHERE user_id = 'carol'")
    assert "error" not in post, (
        f"the running request got no answer ({post.get('error')!r}); stored rows: {stored}"
    )
    assert post["result"].status_code == 201, post["result"].text
    assert stored == [("PENDING",)]
    assert exit_code == 0, f"exit code {exit_code} (None: still running {STOP_TIMEOUT} s after SIGTERM)"


def test_sigterm_during_a_socket_connect_stops_the_server_and_loses_nothing(live_server, socket_client):
    [waiting] = live_server.send(["bob"], "stored while bob was away")
    bob = socket_client()
    with write_lock_elsewhere(live_server.db_path):
        connecting = in_background(lambda: connect(bob, live_server, "bob", ack=True))
        wait_for(
            lambda: stuck(live_server),
            message="the connect to be claiming bob's pending notification",
        )
        live_server.send_signal(signal.SIGTERM)

    exit_code = live_server.stop()
    connecting["thread"].join(timeout=30)

    status = live_server.statuses([waiting["id"]])[waiting["id"]]
    assert waiting["id"] in bob.notification_ids() or status == "PENDING", (
        f"the notification is {status} but never reached bob (connect: {connecting.get('error')!r})"
    )
    assert exit_code == 0, f"exit code {exit_code} (None: still running {STOP_TIMEOUT} s after SIGTERM)"
