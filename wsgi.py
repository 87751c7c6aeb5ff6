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

from app import create_app  # noqa: E402  (after monkey-patching)
from app.extensions import socketio  # noqa: E402

app = create_app()

if __name__ == "__main__":
    socketio.run(app, host=app.config["HOST"], port=app.config["PORT"], log_output=False)
