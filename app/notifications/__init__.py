"""The notifications blueprint: REST routes under /v1."""

from app.notifications.routes import bp

__all__ = ["bp"]
