"""In-memory collaborators of the delivery core (app/delivery/ports.py): a store, presence over
several processes, and a transport that records each send as the value it was given."""

from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from datetime import datetime

from app.delivery import Confirmations, Delivery, Holders, Reading, Route, Tick
from app.protocol import NotificationStatus
from app.records import NotificationRecord, utcnow

DELIVERED, PENDING, READ = NotificationStatus.DELIVERED, NotificationStatus.PENDING, NotificationStatus.READ


class FakeStore:
    """The notifications table as a dict; each call atomic, as the SQL statements are."""

    def __init__(self) -> None:
        self.rows: dict[str, NotificationRecord] = {}
        self.muted: set[tuple[str, str]] = set()  # (user, category)

    def insert(self, records: list[NotificationRecord], before_commit: Callable[[], None] | None) -> list:
        written = [n for n in records if (n.user_id, n.category) not in self.muted]
        if before_commit is not None:
            before_commit()  # inside the transaction: nobody sees the rows yet
        self.rows.update({n.id: replace(n) for n in written})
        return written

    def claim(self, ids: Collection[str] = (), users: Collection[str] = (), received: bool = False) -> list:
        now, claimed = utcnow(), []
        for n in self.rows.values():
            if n.status is PENDING and (n.id in ids or n.user_id in users):
                n.status, n.delivered_at = DELIVERED, now
                n.received_at = now if received else n.received_at
                claimed.append(replace(n))
        return claimed

    def requeue(
        self, ids: Collection[str], keep_confirmed: bool = True, always: Collection[str] = ()
    ) -> set[str]:
        back = set()
        for n in self.rows.values():
            confirmed = n.received_at is not None and n.id not in always
            if n.id in ids and n.status is DELIVERED and not (keep_confirmed and confirmed):
                n.status, n.delivered_at, n.received_at = PENDING, None, None
                back.add(n.id)
        return back

    def requeue_unconfirmed(self, sent_before: datetime) -> set[str]:
        users = set()
        for n in self.rows.values():
            if n.status is DELIVERED and n.received_at is None and n.delivered_at < sent_before:
                n.status, n.delivered_at = PENDING, None
                users.add(n.user_id)
        return users

    def connect_state(self, user_id: str) -> tuple[bool, int]:
        mine = [n for n in self.rows.values() if n.user_id == user_id]
        return any(n.status is PENDING for n in mine), sum(n.status is not READ for n in mine)

    def unread_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        return {u: sum(n.user_id == u and n.status is not READ for n in self.rows.values()) for u in user_ids}

    def confirm(self, notification_ids: list[str]) -> int:
        now, count = utcnow(), 0
        for notification_id in notification_ids:
            n = self.rows.get(notification_id)
            if n is not None and n.received_at is None:
                n.received_at, count = now, count + 1
        return count

    def status(self, notification_id: str) -> NotificationStatus:
        return self.rows[notification_id].status


class FakePresence:
    """Every process's sockets in one dict: sid -> (user, process, plain). `on_read` runs before each read."""

    def __init__(self, shared: bool = False, process_id: str = "here") -> None:
        self.shared = shared
        self.process_id = process_id
        self.sockets: dict[str, tuple[str, str, bool]] = {}
        self.on_read: list[Callable[[int], None]] = []
        self.reads = 0
        self.in_sync = True

    def add(self, user_id: str, sid: str, plain: bool = False, process_id: str | None = None) -> None:
        self.sockets[sid] = (user_id, process_id or self.process_id, plain)

    def remove(self, sid: str) -> str | None:
        found = self.sockets.pop(sid, None)
        return found[0] if found else None

    def read(self, user_ids: Iterable[str]) -> Reading:
        self.reads += 1
        for hook in list(self.on_read):
            hook(self.reads)
        users = set(user_ids)
        mine = [(u, p, plain) for u, p, plain in self.sockets.values() if u in users]
        holders = {
            u: Holders(
                frozenset(p for v, p, _ in mine if v == u),
                frozenset(p for v, p, plain in mine if v == u and not plain),
            )
            for u in users
        }
        return Reading(
            online=frozenset(u for u, _, _ in mine),
            plain=frozenset(u for u, _, plain in mine if plain),
            acknowledging=frozenset(u for u, _, plain in mine if not plain),
            holders=holders if self.shared else {},
        )

    def socket_count(self, user_id: str) -> int:
        return sum(u == user_id for u, _, _ in self.sockets.values())

    def heartbeat(self) -> Tick:
        return Tick()

    def finish_reaping(self, dead) -> None:
        pass

    def close(self) -> None:
        self.sockets.clear()


class FakeTransport:
    """Records every send: (event, [(user, payload)], route), and what went to single sockets."""

    def __init__(self, routed: bool = False) -> None:
        self.routed = routed
        self.sends: list[tuple[str, list, Route]] = []
        self.to_sockets: list[tuple[str, str, object]] = []
        self.rooms: dict[str, str] = {}

    def send(self, event: str, items, route: Route) -> None:
        self.sends.append((event, list(items), route))

    def send_to_socket(self, sid: str, event: str, payload: object) -> None:
        self.to_sockets.append((sid, event, payload))

    def join(self, sid: str, user_id: str) -> None:
        self.rooms[sid] = user_id

    def leave(self, sid: str, user_id: str) -> None:
        self.rooms.pop(sid, None)

    def pause(self) -> None:
        pass

    def sent_ids(self, event: str) -> list[str]:
        """The notification ids sent with `event` to users' sockets, in order."""
        ids = []
        for sent_event, items, _route in self.sends:
            if sent_event == event:
                for _user, payload in items:
                    ids += [n["id"] for n in payload] if isinstance(payload, list) else [payload["id"]]
        return ids


class Later:
    """Background tasks of the core, held until a test runs them: `later(seconds, task)`."""

    def __init__(self) -> None:
        self.tasks: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, seconds: float, task: Callable[[], None]) -> None:
        self.tasks.append((seconds, task))

    def run(self) -> None:
        """Run the tasks held so far, as if their time had come."""
        tasks, self.tasks = self.tasks, []
        for _seconds, task in tasks:
            task()


def make_delivery(shared: bool = False, **config) -> tuple[Delivery, FakeStore, FakePresence, FakeTransport]:
    """A core on fakes: several processes when `shared`, else one."""
    store, presence, transport = FakeStore(), FakePresence(shared), FakeTransport(routed=shared)
    confirmations = Confirmations(store.confirm, start_task=lambda _task: None, sleep=lambda _s: None)
    settings = {"MAX_SOCKETS_PER_USER": 10, "DELIVERY_CONFIRM_TIMEOUT": 30, **config}
    delivery = Delivery(store, presence, transport, confirmations, settings, later=Later())
    return delivery, store, presence, transport
