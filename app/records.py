"""Plain values of notifications, shared by the models, the store and the delivery core: no database here."""

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from app.protocol import DEFAULT_CATEGORY, NotificationStatus


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh notification id: see `new_ids`."""
    return new_ids(1)[0]


# Of each id's 16 bytes: the random bits kept, then the time, version (7) and variant bits set.
_RANDOM_BITS = bytes.fromhex("0000000000000fff3fffffffffffffff")
_VERSION_AND_VARIANT = bytes.fromhex("00000000000070008000000000000000")


def new_ids(count: int) -> list[str]:
    """`count` fresh time-ordered UUID strings (version 7, RFC 9562), made in one go.

    48 bits of Unix time in milliseconds, then 74 random bits: as hard to guess as the
    version 4 ids used before, and ids made together share their leading bits, so the
    rows of a fan-out go into one end of the primary key's index instead of pages all
    over it (about a third of SQLite's INSERT at 10,000 rows, bench/README.md).
    """
    stamp = int.from_bytes((time.time_ns() // 1_000_000).to_bytes(6) + bytes(10))
    fixed = int.from_bytes(_VERSION_AND_VARIANT) | stamp
    value = int.from_bytes(os.urandom(16 * count)) & int.from_bytes(_RANDOM_BITS * count)
    value |= int.from_bytes(fixed.to_bytes(16) * count)
    h = value.to_bytes(16 * count).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def ids_ascending_with(user_ids: list[str]) -> list[str]:
    """A fresh id (`new_ids`) for each of `user_ids`, the ids in the order of the user ids.

    Written in id order (bulk.py), the rows of a fan-out then go into the primary key and
    into the indexes that start with the user id each in ascending order: every page is
    visited once, instead of once per row in the order the users were listed (SQLite, a
    10,000-row INSERT: 33 -> 23 ms).
    """
    ids = new_ids(len(user_ids))
    if len(ids) < 2:
        return ids
    ids.sort()
    ordered = [""] * len(ids)
    for rank, position in enumerate(sorted(range(len(ids)), key=user_ids.__getitem__)):
        ordered[position] = ids[rank]
    return ordered


PENDING, DELIVERED = NotificationStatus.PENDING, NotificationStatus.DELIVERED


@dataclass(slots=True)
class NotificationRecord:
    """The values of one `notifications` row, without ORM bookkeeping.

    What bulk operations (create, claim) return: building thousands of ORM
    instances would cost more than writing the rows.
    """

    id: str
    user_id: str
    message: str
    status: NotificationStatus
    created_at: datetime
    delivered_at: datetime | None
    read_at: datetime | None
    received_at: datetime | None = None
    data: dict | None = None
    created_by: str | None = None
    category: str = DEFAULT_CATEGORY
    topic: str | None = None


def new_records(
    user_ids: list[str],
    online,
    plain,
    *,
    message: str,
    data: dict | None = None,
    created_by: str | None = None,
    category: str = DEFAULT_CATEGORY,
    topic: str | None = None,
) -> list[NotificationRecord]:
    """One new record per user, all with the same message, data, created_by, category and topic.

    DELIVERED for the `online` users (and received for the `plain` ones: their client never
    acknowledges), PENDING for the others. Built with positional arguments, and without a
    test per row when nobody is online: a fan-out makes thousands.
    """
    now = utcnow()
    ids = ids_ascending_with(user_ids)
    record = NotificationRecord
    if not online:
        return [
            record(i, u, message, PENDING, now, None, None, None, data, created_by, category, topic)
            for i, u in zip(ids, user_ids, strict=True)
        ]
    return [
        record(
            i,
            u,
            message,
            DELIVERED if u in online else PENDING,
            now,
            now if u in online else None,
            None,
            now if u in plain else None,
            data,
            created_by,
            category,
            topic,
        )
        for i, u in zip(ids, user_ids, strict=True)
    ]


def oldest_first(notifications: list[NotificationRecord]) -> list[NotificationRecord]:
    """These notifications in the order they were created."""
    return sorted(notifications, key=lambda n: (n.created_at, n.id))
