"""What became of every notification of a chaos run: received, lost, stuck, duplicated, sent again.

Every arrival of an id beyond its first is a duplicate, from one of three causes: the id was
sent again (another `deliveredAt`), one send reached more sockets of the user than one (a
move overlaps two connections), or one socket got one send twice.
"""

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.actors import Arrival, User
from bench.chaos.servers import Stored
from bench.chaos.settings import clock_text
from tests.support.logs import USER_DISCONNECTED, pattern

MAX_DETAILS = 20  # notifications listed one by one per kind of problem in the report
KINDS = ("acknowledging", "plain")


@dataclass
class Tally:
    """What became of the notifications of one kind of client."""

    users: int = 0
    created: int = 0
    received: int = 0
    lost: int = 0  # never received, not PENDING
    stuck: int = 0  # PENDING at the end
    unconfirmed: int = 0  # DELIVERED at the end, never confirmed
    arrivals: int = 0
    sent_again: int = 0  # ids sent to the user more than once
    resend_arrivals: int = 0
    extra_socket_arrivals: int = 0
    repeat_arrivals: int = 0
    lost_on: Counter[str] = field(default_factory=Counter)  # how the connections open at the send ended
    sent_again_why: Counter[str] = field(default_factory=Counter)
    details: dict[str, list[dict]] = field(default_factory=dict)  # every problem, one by one

    @property
    def duplicates(self) -> int:
        return self.arrivals - self.received

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.received if self.received else 0.0

    def count(self, arrivals: list[Arrival]) -> bool:
        """Count the arrivals of one received id; whether it was sent to the user more than once."""
        per_socket = Counter(
            (notification.get("deliveredAt"), client) for _, _, notification, client in arrivals
        )
        sends = len({delivered_at for delivered_at, _ in per_socket})
        self.received += 1
        self.arrivals += len(arrivals)
        self.resend_arrivals += sends - 1
        self.extra_socket_arrivals += len(per_socket) - sends
        self.repeat_arrivals += len(arrivals) - len(per_socket)
        again = sends > 1 or len(arrivals) > len(per_socket)
        self.sent_again += again
        return again


def moment(value) -> float | None:
    """A time from the database (a datetime, or SQLite's text, in UTC) or the wire, as a timestamp."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _detail(user: User, notification_id: str, row: Stored, arrivals: list[Arrival]) -> dict:
    """One notification, what reached the user's clients, and the user's connections around its sends."""
    sends = {moment(notification.get("deliveredAt")) for _, _, notification, _ in arrivals}
    moments = sorted(m for m in (moment(row.delivered_at), *sends) if m is not None)
    return {
        "id": notification_id,
        "user": user.user_id,
        "status": row.status,
        "confirmed": row.confirmed,
        "createdAt": clock_text(moment(row.created_at)) if row.created_at is not None else None,
        "deliveredAt": clock_text(moment(row.delivered_at)) if row.delivered_at is not None else None,
        "arrivals": [
            [clock_text(at), event, notification.get("deliveredAt"), client]
            for at, event, notification, client in arrivals
        ],
        "connections": user.connections_around(moments),
    }


def _sent_again_because(user: User, arrivals: list[Arrival], confirm_timeout: float) -> str:
    """Why an id was sent again: the sweeper (unconfirmed after the timeout), or the connections
    whose close put it back between its first two sends."""
    sends = sorted({moment(notification.get("deliveredAt")) or 0.0 for _, _, notification, _ in arrivals})
    if len(sends) == 1:
        return "one send arrived twice on one socket"
    first, second = sends[:2]
    if second - first >= confirm_timeout:
        return "unconfirmed after DELIVERY_CONFIRM_TIMEOUT (the sweeper)"
    closed = user.closed_between(first, second)
    return f"put back when a connection closed ({closed})" if closed else "no connection closed"


def account(
    users: list[User], stored: dict[str, Stored], answered: dict[str, str], confirm_timeout: float
) -> dict[str, Tally]:
    """Tally every notification of the run's users against what reached their clients: those stored,
    and those a POST was answered with that are not stored (status MISSING: lost unless received)."""
    tallies = {kind: Tally() for kind in KINDS}
    by_user = {user.user_id: user for user in users}
    arrivals_by_id: dict[str, list[Arrival]] = {}
    for user in users:
        tallies[user.kind].users += 1
        for arrival in user.arrivals():
            arrivals_by_id.setdefault(arrival[2]["id"], []).append(arrival)
    missing = {
        i: Stored(u, "MISSING", False, None, None, None) for i, u in answered.items() if i not in stored
    }
    for notification_id, row in sorted({**stored, **missing}.items()):
        user = by_user.get(row.user_id)
        if user is None:
            continue
        tally = tallies[user.kind]
        arrivals = sorted(arrivals_by_id.get(notification_id, []), key=lambda arrival: arrival[0])
        tally.created += 1
        problems = []
        if row.status == "PENDING":
            tally.stuck += 1
            problems.append("stuck")
        elif not row.confirmed:
            tally.unconfirmed += 1
        if not arrivals:
            if row.status != "PENDING":
                tally.lost += 1
                tally.lost_on[user.open_at(moment(row.delivered_at))] += 1
                problems.append("lost")
        elif tally.count(arrivals):
            tally.sent_again_why[_sent_again_because(user, arrivals, confirm_timeout)] += 1
            problems.append("sent again")
        for problem in problems:
            tally.details.setdefault(problem, []).append(_detail(user, notification_id, row, arrivals))
    return tallies


def broken(tallies: dict[str, Tally], max_duplicates: float = 1.0) -> list[str]:
    """The guarantees the run saw broken, in words; none when it passed. `max_duplicates`: the largest
    share of acknowledging clients' notifications received twice that passes."""
    ack, plain = tallies["acknowledging"], tallies["plain"]
    problems = []
    if ack.duplicate_rate > max_duplicates:
        problems.append(f"{ack.duplicate_rate:.2%} of acknowledging clients' notifications received twice")
    if ack.lost:
        problems.append(f"{ack.lost} notification(s) of acknowledging clients lost")
    if ack.stuck:
        problems.append(f"{ack.stuck} notification(s) of acknowledging clients stuck PENDING")
    if plain.sent_again:
        problems.append(f"{plain.sent_again} notification(s) sent again to plain clients")
    return problems


def table(tallies: dict[str, Tally]) -> list[str]:
    """Per kind of client: created, received, lost, stuck, duplicates and their causes."""
    header = (
        "clients",
        "users",
        "created",
        "received",
        "lost",
        "stuck",
        "duplicates (rate)",
        "ids sent again",
        "dup: re-sends",
        "dup: 2+ sockets",
        "dup: same socket",
    )
    rows = [header]
    for kind, t in tallies.items():
        rows.append(
            (
                kind,
                t.users,
                t.created,
                t.received,
                t.lost,
                t.stuck,
                f"{t.duplicates} ({t.duplicate_rate:.2%})",
                t.sent_again,
                t.resend_arrivals,
                t.extra_socket_arrivals,
                t.repeat_arrivals,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(value).rjust(width) for value, width in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def read_closes(users: list[User], log_paths: list[Path]) -> None:
    """Set each connection's `closed`: when its server logged the disconnection of its sid."""
    disconnected = pattern(USER_DISCONNECTED)
    closed: dict[str, float] = {}
    for path in log_paths:
        with open(path, errors="replace") as log:
            for line in log:
                found = disconnected.search(line)
                if found:
                    closed[found.group(2)] = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    for user in users:
        for connection in user.connections:
            connection.closed = closed.get(connection.sid)


def write_files(folder: Path, users: list[User], stored: dict[str, Stored]) -> list[Path]:
    """Everything a finding needs looked at: the rows, every arrival, every connection (CSV)."""
    tables = {
        "notifications.csv": (
            ("id", *Stored._fields),
            [(i, *row) for i, row in sorted(stored.items(), key=lambda item: str(item[1].created_at))],
        ),
        "arrivals.csv": (
            ("time", "user", "client", "event", "id", "deliveredAt"),
            sorted(
                (
                    clock_text(at),
                    user.user_id,
                    client,
                    event,
                    notification["id"],
                    notification.get("deliveredAt"),
                )
                for user in users
                for at, event, notification, client in user.arrivals()
            ),
        ),
        "connections.csv": (
            ("user", "client", "server", "sid", "opened", "left", "closed by its server", "how"),
            sorted(
                (
                    user.user_id,
                    c.client.name,
                    c.server,
                    c.sid,
                    clock_text(c.opened),
                    clock_text(c.ended) if c.ended else "",
                    clock_text(c.closed) if c.closed else "",
                    c.how,
                )
                for user in users
                for c in user.connections
            ),
        ),
    }
    paths = []
    for name, (header, rows) in tables.items():
        path = folder / name
        with open(path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        paths.append(path)
    return paths
