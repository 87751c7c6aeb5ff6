"""SQLite's checkpoints, run by the server in an OS thread instead of inside a commit.

In WAL mode a commit appends the pages it changed to the log file; a checkpoint copies
them back into the database file and syncs it. By default the connection whose commit
takes the log past 1,000 pages runs the checkpoint itself, before its commit returns. On
the server's one event loop that stopped every request and socket for the length of the
checkpoint: 7-15 ms for the pages of a 10,000-row send, which paid it on every send, and
a pause every couple of hundred single sends (bench/README.md, "Checkpoints off the
event loop").

`python wsgi.py` on a SQLite file runs them instead through eventlet's thread pool: the
sqlite3 module lets go of the GIL while SQLite works, so requests go on meanwhile. Every
INTERVAL_SECONDS one PASSIVE checkpoint copies what no reader still needs and waits for no
one; what it cannot copy yet, the next one does. Serving connections keep SQLite's own
checkpoint as a backstop, at BACKSTOP_PAGES, for a thread that falls behind. Commits stay
as durable as before: each one still syncs the log (`synchronous=FULL`).
"""

import logging
import sqlite3
from collections.abc import Callable

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.25
# Pages in the log before a committing connection checkpoints by itself (SQLite's default: 1,000).
BACKSTOP_PAGES = 10_000
STARTED_LOG = "sqlite checkpoints: in a thread of their own every %s s (a commit checkpoints past %d pages)"


def database_file(engine: Engine) -> str | None:
    """The SQLite file `engine` writes, or None (another database, or SQLite in memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


def backstop(dbapi_connection, _connection_record) -> None:
    """A serving connection's own checkpoint only past BACKSTOP_PAGES (the thread does the rest)."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cursor.close()


class Checkpointer:
    """PASSIVE checkpoints of one SQLite file on a connection of their own."""

    def __init__(self, path: str) -> None:
        # Used by one thread at a time (the loop waits for each checkpoint), whichever it is.
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA synchronous=FULL")

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (1 if it could not start, pages in the log, pages copied)."""
        busy, log_pages, copied = self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, log_pages, copied

    def close(self) -> None:
        self.connection.close()


def start(engine: Engine, spawn: Callable, sleep: Callable) -> Checkpointer | None:
    """Checkpoint `engine`'s SQLite file from a background task (`spawn`, `sleep`: the server's).

    From here on, connections the engine opens leave checkpoints to it; those opened before
    are closed. Does nothing for another database.
    """
    path = database_file(engine)
    if path is None:
        return None
    checkpointer = Checkpointer(path)
    event.listen(engine, "connect", backstop)
    engine.dispose()
    spawn(_loop, checkpointer, sleep)
    log.info(STARTED_LOG, INTERVAL_SECONDS, BACKSTOP_PAGES)
    return checkpointer


def _loop(checkpointer: Checkpointer, sleep: Callable) -> None:
    from eventlet import tpool

    failing = False
    while True:
        sleep(INTERVAL_SECONDS)
        try:
            # Nothing in the thread logs: eventlet's locks do not work across OS threads.
            tpool.execute(checkpointer.checkpoint)
        except sqlite3.Error:
            if not failing:
                log.warning(
                    "sqlite checkpoint failed; commits checkpoint past %d pages",
                    BACKSTOP_PAGES,
                    exc_info=True,
                )
            failing = True
        else:
            if failing:
                log.info("sqlite checkpoints work again")
            failing = False
