"""`wsgi.py` of the floor project that bench/floor.sh hands to the peer comparison.

`python wsgi.py` serves bench/baseline_server.py (the stack with nothing else) with plain
sends, as the service sends to the official client; `flask --app wsgi db upgrade` has nothing
to migrate.
"""

import os
import runpy

if __name__ == "__main__":
    os.environ.setdefault("BASELINE_ACK_REQUESTS", "0")
    runpy.run_module("bench.baseline_server", run_name="__main__")
else:
    from flask import Flask

    app = Flask("floor")

    @app.cli.group("db")
    def db() -> None:
        """No database."""

    @db.command("upgrade")
    def upgrade() -> None:
        """Nothing to migrate."""
