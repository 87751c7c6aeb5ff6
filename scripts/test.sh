#!/usr/bin/env bash
# The whole test suite: lint, then pytest on SQLite, then again on PostgreSQL together
# with the multi-process tests (several servers sharing PostgreSQL and Redis, nginx).
# PostgreSQL comes from TEST_POSTGRES_URL (default: the local server); when it does not
# answer, that second run is skipped with a reason, unless REQUIRE_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG_URL=${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}

echo "== lint (ruff)"
$PY -m ruff check .

echo "== tests on SQLite"
env -u DATABASE_URL -u SOCKETIO_MESSAGE_QUEUE $PY -m pytest -m "not cluster" "$@"

if $PY - "$PG_URL" <<'PYEOF'
import sys
import psycopg2
try:
    psycopg2.connect(sys.argv[1], connect_timeout=3).close()
except psycopg2.OperationalError as exc:
    print(f"PostgreSQL at {sys.argv[1]} does not answer: {exc}".strip())
    sys.exit(1)
PYEOF
then
  echo "== tests on PostgreSQL ($PG_URL), with the multi-process cluster tests"
  DATABASE_URL=$PG_URL $PY -m pytest "$@"
elif [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
  echo "PostgreSQL is required (REQUIRE_SERVICES=1) but does not answer" >&2
  exit 1
else
  echo "== tests on PostgreSQL: skipped (no server answers; set TEST_POSTGRES_URL)"
fi
