"""The delivery core of the current app (app/delivery/), for views, commands and socket handlers."""

from flask import current_app

from app.delivery import Delivery
from app.delivery.fanout import Fanout


def current() -> Delivery:
    """The `Delivery` the factory wired for the current app."""
    return current_app.extensions["delivery"]


def fanout() -> Fanout:
    """The `Fanout` (sends to users or a topic, muted categories skipped) of the current app."""
    return current_app.extensions["fanout"]
