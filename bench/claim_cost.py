"""What a connect's drain of 1,000 PENDING rows costs before the client may have them.

`python -m bench.claim_cost [DATABASE_URL]` (default: a new SQLite file) writes 1,000 PENDING
rows for one user beside 50,000 rows of others, then times, medians of 9 (each round starts
from PENDING rows again):

- `select`: the rows read, as the driver gives them: what the Node peer waits for before
  it sends (it marks them DELIVERED after the send);
- `update`: the same rows marked DELIVERED and committed, one statement, nothing returned:
  the database's part of any durable mark;
- `claim`: the service's claim (`rows.claim`): one `UPDATE ... RETURNING`, committed, and
  the records built from what it returned.

A plain client's rows must be DELIVERED before they are sent (at most once, docs/CONTRACT.md:
a crash after the send must not leave them PENDING, to be sent again), so its drain waits for
`claim`, where the peer's waits for `select` (bench/README.md, S5).
"""

import statistics
import sys
import tempfile
import time

from sqlalchemy import text

from app.extensions import db
from app.records import new_records
from app.services import rows
from app.services.store import NotificationStore
from config import database_url
from tests.support.inprocess import fresh_app

ROWS, OTHERS, ROUNDS = 1000, 50_000, 9
USER = "drained"
SELECT = "SELECT * FROM notifications WHERE user_id = :u AND status = 'PENDING' ORDER BY created_at, id"
UPDATE = (
    "UPDATE notifications SET status = 'DELIVERED', delivered_at = created_at "
    "WHERE user_id = :u AND status = 'PENDING'"
)
BACK = (
    "UPDATE notifications SET status = 'PENDING', delivered_at = NULL, received_at = NULL WHERE user_id = :u"
)


def main() -> None:
    url = database_url(sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/claim_cost.db")
    with fresh_app(url) as app, app.app_context():
        store = NotificationStore()
        _write(store, [f"other-{i % 500}" for i in range(OTHERS)])
        _write(store, [USER] * ROWS)
        _run(f"UPDATE notifications SET status = 'READ' WHERE user_id <> '{USER}'")
        _run("ANALYZE")
        timings: dict[str, list[float]] = {"select": [], "update": [], "claim": []}
        for _ in range(ROUNDS):
            timings["select"].append(_timed(lambda: _expect(_run(SELECT))))
            timings["update"].append(_timed(lambda: _expect(range(_run(UPDATE)))))
            _run(BACK)
            timings["claim"].append(_timed(lambda: _expect(store.claim(users=[USER], received=True))))
            _run(BACK)
        dialect = db.engine.dialect.name
    medians = {name: 1000 * statistics.median(values) for name, values in timings.items()}
    print(f"{dialect}: {ROWS} PENDING rows of one user, medians of {ROUNDS} (ms)")
    for name, value in medians.items():
        print(f"  {name:<7} {value:7.2f}")
    print(f"  claim / select {medians['claim'] / medians['select']:.1f}x")


def _write(store: NotificationStore, users: list[str]) -> None:
    for start in range(0, len(users), 5000):
        store.insert(new_records(users[start : start + 5000], set(), set(), message="claim cost"))


def _run(sql: str):
    """The rows a statement returns (as the driver gives them), else how many it changed."""
    with rows.one_statement() as connection:
        result = connection.execute(text(sql).columns(), {"u": USER})
        return result.all() if result.returns_rows else result.rowcount


def _expect(found) -> None:
    assert len(found) == ROWS, len(found)


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
