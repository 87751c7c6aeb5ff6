"""LOG_FORMAT: the JSON formatter of app/logs.py, one record at a time."""

import io
import json
import logging
from datetime import datetime

import pytest

from app.delivery.core import CONNECTED_LOG, CREATED_LOG
from app.logs import JsonFormatter, log_handler


def formatted(logger_name: str, level: int, msg: str, *args, **kwargs) -> dict:
    """One record through a handler with the JSON formatter: the line it writes, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    level_before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(level, msg, *args, **kwargs)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level_before)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_a_json_line_has_time_level_logger_message_pid_and_the_named_fields():
    line = formatted("app.services.delivery", logging.INFO, CONNECTED_LOG, "alice", "sid-1", 2)
    assert line["level"] == "INFO"
    assert line["logger"] == "app.services.delivery"
    assert line["message"] == "user alice connected (sid sid-1): 2 pending sent"
    assert isinstance(line["pid"], int)
    assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    assert (line["user_id"], line["sid"], line["notification_count"]) == ("alice", "sid-1", 2)


def test_an_admin_send_says_who_sent_how_many():
    line = formatted("app.services.delivery", logging.INFO, CREATED_LOG, 3, "ops", 1, 2)
    assert (line["sender"], line["notification_count"]) == ("ops", 3)
    assert (line["delivered_count"], line["pending_count"]) == (1, 2)


def test_extra_fields_and_exceptions_are_kept():
    try:
        raise ValueError("boom")
    except ValueError:
        line = formatted(
            "app.x", logging.ERROR, "failed for %s", "bob", exc_info=True, extra={"user_id": "bob"}
        )
    assert line["user_id"] == "bob"
    assert line["message"] == "failed for bob"
    assert "ValueError: boom" in line["exc_info"]


def test_the_format_setting_is_checked(app):
    app.config["LOG_FORMAT"] = "xml"
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        log_handler(app)
    app.config["LOG_FORMAT"] = "text"
    assert log_handler(app).formatter is None  # basicConfig gives it the text format
