"""Who acts during a chaos run: users who come and go, and the admin who posts at a steady rate."""

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from bench.chaos.servers import Deployment
from bench.chaos.settings import Settings, clock_text
from tests.support.clients import RecordingClient
from tests.support.server import ServerProcess
from tests.support.tokens import bearer
from tests.support.wire import ADMIN_ROUTE

WAYS = ("clean", "drop", "silent", "move", "linger")  # how a user leaves a connection
CLOSED_BY_SERVER = "closed by the server"  # a process stopped or killed under it
FINAL = "final"
CONNECT_RETRY = (0.2, 0.5)  # seconds before trying again when no process took a connection
HTTP_TIMEOUT = 10.0  # seconds for one POST
POSTERS = 8  # POSTs in flight at most
TOPIC_EVERY = 10  # every 10th POST goes to a topic
TOPICS = 3
TOPIC_SIZE = 10  # random users per topic
PING_CYCLE = 45.0  # seconds: the servers' Engine.IO ping interval + timeout, a silent socket's longest life

Arrival = tuple[float, str, dict, str]  # time, event, notification, the client's name


@dataclass
class Connection:
    """One connection of a user: where, when (wall clock), and how it ended.

    `ended` is when the user left it, or saw it closed; `closed` when the server logged
    its disconnection (much later for a silent one), once the logs have been read.
    """

    client: RecordingClient
    server: str
    opened: float
    sid: str | None
    ended: float | None = None
    how: str = ""  # one of WAYS, CLOSED_BY_SERVER or FINAL
    closed: float | None = None
    lingers: float = 0.0  # seconds a lingering connection stays silent before it dies

    @property
    def until(self) -> float:
        """When the server stopped sending to it, as far as is known: when it logged the close;
        for a silent one it did not log (its process died first), at most a ping cycle after."""
        if self.closed is not None:
            return self.closed
        if self.ended is None:
            return float("inf")
        return self.ended + (PING_CYCLE if self.how == "silent" else self.lingers)

    def open_at(self, moment: float, margin: float = 0.0) -> bool:
        return self.opened - margin <= moment <= self.until + margin

    def describe(self) -> str:
        parts = [self.client.name, self.server, f"sid {self.sid}", f"opened {clock_text(self.opened)}"]
        if self.ended is not None:
            parts.append(f"left {clock_text(self.ended)}")
        if self.closed is not None:
            parts.append(f"closed {clock_text(self.closed)}")
        return " ".join([*parts, self.how])


class User:
    """A user who connects to a random process, stays a while, leaves some way, and comes back."""

    def __init__(self, user_id: str, ack: bool, deployment: Deployment, settings: Settings, seed: int):
        self.user_id = user_id
        self.ack = ack
        self.deployment = deployment
        self.settings = settings
        self.rng = random.Random(seed)
        self.token = deployment.token(user_id)
        self.connections: list[Connection] = []
        self.attempts: list[RecordingClient] = []  # every client it made, connected or not
        self.refused = 0
        self.departures: Counter[str] = Counter()

    @property
    def kind(self) -> str:
        return "acknowledging" if self.ack else "plain"

    def connect(self, avoid: str | None = None) -> Connection | None:
        """A new connection to a random running process (another than `avoid` if there is one)."""
        servers = self.deployment.running()
        self.rng.shuffle(servers)
        servers.sort(key=lambda server: server.name == avoid)
        for server in servers:
            client = RecordingClient(self.user_id, name=f"{self.user_id}#{len(self.attempts)}")
            self.attempts.append(client)
            opened = time.time()
            try:
                client.open(server.url, self.token, ack=self.ack)
            except Exception:  # noqa: BLE001  (the process is going down: try another)
                self.refused += 1
                client.close()
                continue
            connection = Connection(client, server.name, opened, client.get_sid())
            self.connections.append(connection)
            return connection
        return None

    def leave(self, connection: Connection, how: str) -> None:
        connection.ended, connection.how = time.time(), how
        self.departures[how] += 1
        if how == "drop":
            connection.client.drop()
        elif how == "silent":
            connection.client.go_silent()
        elif how == "linger":  # silent, then the network path breaks
            connection.lingers = self.rng.uniform(self.settings.min_linger, self.settings.max_linger)
            connection.client.go_silent()
            dies = threading.Timer(connection.lingers, connection.client.drop)
            dies.daemon = True
            dies.start()
        elif how != CLOSED_BY_SERVER:
            connection.client.close()

    def _way(self) -> str:
        silent, linger = self.settings.silent, self.settings.linger
        other = (1 - silent - linger) / 3
        return self.rng.choices(WAYS, weights=(other, other, silent, other, linger))[0]

    def _wait(self, seconds: float, stop: threading.Event, connection: Connection | None = None) -> None:
        """Wait `seconds`, or until the run stops, or until the server closes `connection`."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if connection is not None and connection.client.disconnected.is_set():
                return
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def flap(self, stop: threading.Event) -> None:
        """Come and go until `stop`, then leave cleanly."""
        s = self.settings
        connection = None
        while not stop.is_set():
            connection = connection or self.connect()
            if connection is None:
                self._wait(self.rng.uniform(*CONNECT_RETRY), stop)
                continue
            self._wait(self.rng.uniform(s.min_stay, s.max_stay), stop, connection)
            if stop.is_set():
                break
            if connection.client.disconnected.is_set():  # reconnect, as a client library would
                self.leave(connection, CLOSED_BY_SERVER)
                connection = None
                self._wait(self.rng.uniform(*CONNECT_RETRY), stop)
                continue
            way = self._way()
            if way in ("move", "linger"):  # the new connection first, then the old one ends
                moved_to = self.connect(avoid=connection.server)
                self.leave(connection, way)
                connection = moved_to
                continue
            self.leave(connection, way)
            connection = None
            self._wait(self.rng.uniform(s.min_pause, s.max_pause), stop)
        if connection is not None:
            self.leave(connection, CLOSED_BY_SERVER if connection.client.disconnected.is_set() else "clean")

    def come_back(self, deadline: float) -> Connection | None:
        """The final connection, tried until `deadline` (monotonic)."""
        while time.monotonic() < deadline:
            connection = self.connect()
            if connection is not None:
                connection.how = FINAL
                return connection
            time.sleep(self.rng.uniform(*CONNECT_RETRY))
        return None

    def close_all(self) -> None:
        for client in self.attempts:
            client.close()

    def arrivals(self) -> list[Arrival]:
        """Every notification that reached a client of this user."""
        return [
            (at, event, notification, client.name)
            for client in self.attempts
            for at, event, notification in list(client.arrivals)
        ]

    def connection(self, client_name: str) -> Connection | None:
        return next((c for c in self.connections if c.client.name == client_name), None)

    def open_at(self, moment: float | None) -> str:
        """How the connections open at `moment` ended, e.g. "drop" or "clean+silent"."""
        if moment is None:
            return "never sent"
        return "+".join(sorted({c.how for c in self.connections if c.open_at(moment)})) or "none open"

    def closed_between(self, start: float, end: float, margin: float = 0.05) -> str:
        """How the connections the server closed between `start` and `end` ended ("" if none did)."""
        return "+".join(
            sorted({c.how for c in self.connections if start - margin <= c.until <= end + margin})
        )

    def connections_around(self, moments: list[float], margin: float = 2.0) -> list[str]:
        """The connections open within `margin` seconds of any of these moments."""
        return [c.describe() for c in self.connections if any(c.open_at(m, margin) for m in moments)]


class Poster:
    """POSTs at a steady rate to 1-3 random users each, through a random running process.

    Every TOPIC_EVERY-th POST goes to one of TOPICS topics of TOPIC_SIZE random users instead
    (their rows are tallied from the database like every other, see accounting.py).
    """

    def __init__(self, deployment: Deployment, user_ids: list[str], settings: Settings, seed: int):
        self.deployment = deployment
        self.user_ids = user_ids
        self.settings = settings
        self.rng = random.Random(seed)
        self.headers = bearer(deployment.token("chaos-admin", admin=True))
        self.created: dict[str, str] = {}  # notification id -> user id, from the 201 answers
        self.topic_rows = 0  # rows the topic sends' 201 answers counted (they list no ids)
        self.posts = 0
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        interval = 1.0 / self.settings.rate
        due = time.monotonic()
        topics = self._make_topics()
        with ThreadPoolExecutor(max_workers=POSTERS, thread_name_prefix="poster") as pool:
            while not stop.is_set():
                servers = self.deployment.running()
                self.rng.shuffle(servers)
                self.posts += 1
                if topics and self.posts % TOPIC_EVERY == 0:
                    body = {"topic": self.rng.choice(topics), "message": f"chaos #{self.posts}"}
                else:
                    size = self.rng.randint(1, min(3, len(self.user_ids)))
                    body = {
                        "userIds": self.rng.sample(self.user_ids, size),
                        "message": f"chaos #{self.posts}",
                    }
                pool.submit(self._post, servers, body)
                due += interval
                stop.wait(max(0.0, due - time.monotonic()))
        # leaving the pool waited for the POSTs in flight

    @property
    def answered(self) -> int:
        return self.posts - sum(self.failures.values())

    def _make_topics(self) -> list[str]:
        """TOPICS topics of random users, put in through a running process; their names."""
        names = []
        for k in range(TOPICS):
            name = f"chaos-{k}"
            members = self.rng.sample(self.user_ids, min(TOPIC_SIZE, len(self.user_ids)))
            for server in self.deployment.running():
                try:
                    response = requests.put(
                        f"{server.url}/v1/admin/topics/{name}/subscribers",
                        json={"userIds": members},
                        headers=self.headers,
                        timeout=HTTP_TIMEOUT,
                    )
                except requests.RequestException:
                    continue
                if response.status_code == 200:
                    names.append(name)
                    break
        return names

    def _post(self, servers: list[ServerProcess], body: dict) -> None:
        failure = "no process running"
        for server in servers:  # the next one only when this one did not answer at all
            try:
                response = requests.post(
                    server.url + ADMIN_ROUTE, json=body, headers=self.headers, timeout=HTTP_TIMEOUT
                )
            except requests.RequestException as exc:
                failure = type(exc).__name__
                continue
            if response.status_code == 201:
                answer = response.json()
                with self._lock:
                    for notification in answer.get("notifications", ()):
                        self.created[notification["id"]] = notification["userId"]
                    self.topic_rows += answer.get("delivered", 0) + answer.get("pending", 0)
                return
            failure = f"HTTP {response.status_code}"
            break
        with self._lock:
            self.failures[failure] += 1
