"""How the core sends to users: routed by a presence read, then followed to where the users moved.

With several processes a send to a user goes only to the processes that held their sockets
at a presence read made *before* the send (`Reading.holders`); a user the read could not
locate goes to every process. A user may move meanwhile (a socket closed on A, one opened on
B), so after the send presence is read *again*: each process that holds an acknowledging
socket of the user at that second read and was not sent to gets the send again, to its
acknowledging sockets only (a plain client that had it on A is never sent it twice).
"""

from collections.abc import Iterable, Sequence

from app.delivery.ports import Presence, Reading, Route, Transport
from app.protocol import NEW_NOTIFICATION, UNREAD_COUNT
from app.records import NotificationRecord
from app.schemas import notification_to_wire as to_wire

NOBODY = Reading()


def processes_moved_to(users: Iterable[str], published: Reading, now: Reading) -> dict[str, frozenset[str]]:
    """Per user: the processes holding an acknowledging socket of theirs at the second read (`now`)
    that the send, routed by the first (`published`), did not go to."""
    found = {
        user_id: now.holders[user_id].acknowledging - published.holders[user_id].processes
        for user_id in users
        if user_id in now.holders and user_id in published.holders
    }
    return {user_id: processes for user_id, processes in found.items() if processes}


def notification_items(notifications: Iterable[NotificationRecord]) -> list[tuple[str, object]]:
    """One `new_notification` per notification, to its user."""
    return [(n.user_id, to_wire(n)) for n in notifications]


class Sends:
    """The core's sends through its transport, each with the route of a presence read."""

    def __init__(self, presence: Presence, transport: Transport) -> None:
        self.presence = presence
        self.transport = transport

    def send(self, event: str, items: Sequence[tuple[str, object]], reading: Reading) -> None:
        """Send each (user, payload) to the processes `reading` found holding that user's sockets."""
        if items:
            self.transport.send(event, items, Route(reading.processes()))

    def again(
        self, event: str, items: Sequence[tuple[str, object]], published: Reading, now: Reading
    ) -> None:
        """Send again, to acknowledging sockets only, where users moved to (`processes_moved_to`)."""
        if not self.transport.routed:
            return  # one process: nowhere else a socket could have moved to
        moved = processes_moved_to({user_id for user_id, _ in items}, published, now)
        if moved:
            again = [(user_id, payload) for user_id, payload in items if user_id in moved]
            self.transport.send(event, again, Route(moved, acknowledging_only=True))

    def send_and_follow(self, event: str, items: Sequence[tuple[str, object]], reading: Reading) -> Reading:
        """`send`, then read presence again for the routed users and send `again`.

        Returns the last presence read made (the second, or `reading` when nothing was routed).
        """
        self.send(event, items, reading)
        users = {user_id for user_id, _ in items} & reading.holders.keys()
        if not users:
            return reading  # one process: nothing is routed there
        now = self.presence.read(users)
        self.again(event, items, reading, now)
        return now

    def notifications(self, notifications: Sequence[NotificationRecord], reading: Reading) -> None:
        """`new_notification` for each of `notifications`, routed by `reading`."""
        self.send(NEW_NOTIFICATION, notification_items(notifications), reading)

    def unread_counts(self, counts: dict[str, int], route: Route) -> None:
        """Each user's unread count, to all their sockets (as `route` says)."""
        items = [(user_id, {"count": count}) for user_id, count in counts.items()]
        if items:
            self.transport.send(UNREAD_COUNT, items, route)


def count_route(users: Iterable[str], reads: Sequence[Reading]) -> Route:
    """The route of the unread counts after a create: every process any of its reads found holding a
    socket of the user, for users the first or the last read located (the others: every process)."""
    first, last = reads[0].holders, reads[-1].holders
    return Route(
        {
            user_id: frozenset().union(
                *(read.holders[user_id].processes for read in reads if user_id in read.holders)
            )
            for user_id in users
            if user_id in first or user_id in last
        }
    )
