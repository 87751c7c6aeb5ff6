"""Entry point: `python wsgi.py` serves on HOST:PORT; `flask --app wsgi ...` runs commands."""

import os
import warnings

# `flask ...` commands (db, run, send-notification) run with threads and import Flask
# before this file, too late to monkey-patch; the server itself runs on eventlet.
if not os.environ.get("FLASK_RUN_FROM_CLI"):
    # eventlet is the chosen server; its deprecation notice would only add noise to every start.
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    import eventlet

    # Also makes psycopg2 wait for PostgreSQL through eventlet's hub (psycopg=True), so a
    # slow query blocks only its own request (tests/e2e/test_postgres_green.py).
    eventlet.monkey_patch()

from app import create_app  # noqa: E402  (after monkey-patching)

app = create_app()

if __name__ == "__main__":
    from app.realtime.server import serve

    serve(app)
