#!/usr/bin/env bash
# The stack's floor against the Node peer, in one run: ../shared/perf/compare.sh with, in place
# of the service, bench/baseline_server.py (Flask-SocketIO on eventlet, plain sends, no
# database, nothing stored). Its ratios bound what the service can reach on this stack.
#   bench/floor.sh --db sqlite --scenarios s1,s3,s6      (compare.sh's options)
set -euo pipefail
cd "$(dirname "$0")/.."
floor=$(mktemp -d)
trap 'rm -rf "$floor"' EXIT
cp -r app bench config.py requirements.txt "$floor"/
cp bench/floor_wsgi.py "$floor/wsgi.py"
ln -s "$PWD/.venv" "$floor/.venv"
../shared/perf/compare.sh --project "$floor" --out "$PWD/bench/results/floor" "$@"
