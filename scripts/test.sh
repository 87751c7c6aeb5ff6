#!/usr/bin/env bash
# The whole test suite: lint, then pytest on SQLite, then again on PostgreSQL together
# with the multi-process tests (several servers sharing PostgreSQL and Redis, nginx).
# PostgreSQL comes from TEST_POSTGRES_URL (default: DEFAULT_POSTGRES_URL of
# tests/support/services.py, the local server); when it does not answer, that second run
# is skipped with a reason, unless REQUIRE_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG_URL=$($PY -c 'from tests.support.services import postgres_server_url; print(postgres_server_url())')

echo "== lint (ruff)"
$PY -m ruff check .

echo "== tests on SQLite"
env -u DATABASE_URL -u SOCKETIO_MESSAGE_QUEUE $PY -m pytest -m "not cluster" "$@"

if $PY - "$PG_URL" <<'PYEOF'
import sys
from tests.support.services import postgres_problem
problem = postgres_problem(sys.argv[1])
if problem:
    print(problem)
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
