"""Entry point: `python wsgi.py` serves on HOST:PORT; `flask --app wsgi ...` runs commands."""

import os
import warnings

# `flask ...` commands (db, run, send-notification) run with threads and import Flask
# before this file, too late to monkey-patch; the server itself runs on eventlet.
if not os.environ.get("FLASK_RUN_FROM_CLI"):
    # eventlet is the chosen server; its deprecation notice would only add noise to every start.
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

    # psycopg2 is C code that would block the whole process on every query; this makes
    # it wait for the database through eventlet's hub instead.
    from psycogreen.eventlet import patch_psycopg

    patch_psycopg()

from app import create_app  # noqa: E402  (after monkey-patching)

app = create_app()

if __name__ == "__main__":
    from app.server import serve

    serve(app)
