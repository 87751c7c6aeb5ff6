"""Log format: text lines for development (the default), or one JSON object per line (LOG_FORMAT=json).

The JSON form comes from python-json-logger (its orjson formatter): `time` (UTC, ISO 8601),
`level`, `logger`, `message`, `pid`, then fields. A field is anything a log call passes in
`extra=`, and, for the named log lines that operators and tests read (the `*_LOG`
constants at their log site), their values under the names LOG_FIELDS gives them, so
that a shipper can filter on `user_id` or `sid` without parsing the message.
"""

import logging

from flask import Flask
from pythonjsonlogger.orjson import OrjsonFormatter

from app.delivery.core import CONNECTED_LOG, CREATED_LOG
from app.delivery.putback import DISCONNECTED_LOG
from app.delivery.sweeper import PROCESS_REAPED_LOG
from app.services.presence.redis import REGISTERED_LOG

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

# Named log line -> the names of its %-values, in order.
LOG_FIELDS: dict[str, tuple[str, ...]] = {
    CREATED_LOG: ("notification_count", "sender", "delivered_count", "pending_count"),
    CONNECTED_LOG: ("user_id", "sid", "notification_count"),
    DISCONNECTED_LOG: ("user_id", "sid", "notification_count"),
    PROCESS_REAPED_LOG: ("process_id", "user_count"),
    REGISTERED_LOG: ("socket_count", "user_count", "process_id", "previous_process_id"),
}


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter, with the fields of the named log lines."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "process"],
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            timestamp="time",
        )

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        names = LOG_FIELDS.get(record.msg) if isinstance(record.msg, str) else None
        if names and isinstance(record.args, tuple) and len(record.args) == len(names):
            for name, value in zip(names, record.args, strict=True):
                log_data.setdefault(name, value)


def log_handler(app: Flask) -> logging.Handler:
    """The stderr handler of LOG_FORMAT: with the JSON formatter, or none (basicConfig adds the text one)."""
    log_format = app.config["LOG_FORMAT"]
    if log_format not in FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be one of {FORMATS}, got {log_format!r}")
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    return handler
