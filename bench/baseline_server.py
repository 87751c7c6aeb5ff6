"""The floor: the scenarios' wire contract on the same stack, with nothing else.

Flask + Flask-SocketIO on eventlet's WSGI server, like `python wsgi.py` (with its
garbage-collector thresholds and orjson), but no database, no schema validation, no
presence, no delivery tracking beyond the ack request: a connect checks the HS256
token and joins the user's room; the admin POST emits one `new_notification` (with
an ack request, as the service does) to each user's room and answers them DELIVERED
or PENDING. What the service spends beyond this process, per connect or per POST,
is its own work; what this one spends is the stack's.

Run by the bench for its `baseline/1p` topology (`python -m bench --db baseline`);
environment: HOST, PORT, JWT_SECRET_KEY.
"""

import warnings

# As in wsgi.py: eventlet is the stack under test; its deprecation notice is noise.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import gc  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import eventlet.wsgi  # noqa: E402
import jwt  # noqa: E402
from flask import Flask, request  # noqa: E402
from flask_socketio import ConnectionRefusedError, SocketIO, join_room  # noqa: E402

from app import jsonfast  # noqa: E402
from app.realtime.server import GC_THRESHOLDS  # noqa: E402

SECRET = os.environ["JWT_SECRET_KEY"]
# With an ack request per send, as the service sends to acknowledging clients (the bench's);
# BASELINE_ACK_REQUESTS=0: plain sends, as to the official client (bench/floor.sh).
ACK_REQUESTS = os.environ.get("BASELINE_ACK_REQUESTS", "1") != "0"

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", json=jsonfast)
sockets_of: dict[str, int] = {}
user_of: dict[str, str] = {}


def claims(header: str | None) -> dict:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        raise ValueError("no bearer token")
    return jwt.decode(token, SECRET, algorithms=["HS256"])


@socketio.on("connect")
def connect(auth=None):
    try:
        user = claims(request.headers.get("Authorization"))["sub"]
    except (ValueError, KeyError, jwt.PyJWTError):
        raise ConnectionRefusedError("unauthorized") from None
    join_room(f"user:{user}")
    user_of[request.sid] = user
    sockets_of[user] = sockets_of.get(user, 0) + 1


@socketio.on("disconnect")
def disconnect(reason=None):
    user = user_of.pop(request.sid, None)
    if user is not None:
        sockets_of[user] -= 1
        if not sockets_of[user]:
            del sockets_of[user]


def acknowledged(*_args):
    """The client's ack arrives here; the service records it, the floor drops it."""


@app.post("/v1/admin/notifications")
def create():
    if claims(request.headers.get("Authorization")).get("role") != "admin":
        return {"error": "forbidden", "message": "admin only"}, 403
    body = request.get_json()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = []
    for user in dict.fromkeys(body["userIds"]):
        online = user in sockets_of
        item = {
            "id": str(uuid.uuid4()),
            "userId": user,
            "message": body["message"],
            "status": "DELIVERED" if online else "PENDING",
            "createdAt": now,
            "deliveredAt": now if online else None,
            "readAt": None,
        }
        if online:
            callback = acknowledged if ACK_REQUESTS else None
            socketio.emit("new_notification", item, to=f"user:{user}", callback=callback)
        out.append(item)
    return {"notifications": out}, 201


@app.get("/healthz")
@app.get("/readyz")  # what the launcher (tests/support/server.py) waits for
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    gc.set_threshold(*GC_THRESHOLDS)  # the service's process setting, see app/server.py
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one file per connection, like the service
    listener = eventlet.listen((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), backlog=1024)
    eventlet.wsgi.server(listener, app, log_output=False, max_size=20_000)
