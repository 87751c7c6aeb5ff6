"""JSON through orjson, for Flask and for Socket.IO packets.

Every notification sent is encoded once per socket and every admin answer
carries one object per recipient: with the standard library, encoding was a
visible share of a fan-out. Values orjson does not know fall back to the
standard encoder, so both stay drop-in replacements.
"""

import json

import orjson
from flask.json.provider import DefaultJSONProvider


def _orjson_text(obj) -> str | None:
    """Compact JSON text through orjson, or None for a value orjson does not take."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return None


def dumps(obj, **kwargs) -> str:
    """Compact JSON text, the way python-socketio and python-engineio call `json.dumps`."""
    text = _orjson_text(obj)
    return text if text is not None else json.dumps(obj, **{"separators": (",", ":"), **kwargs})


def loads(text, **_kwargs):
    """Parse JSON text or bytes; invalid input raises a ValueError like `json.loads`."""
    return orjson.loads(text)


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, encoding and parsing with orjson.

    Keys keep their order (the contract's field order) instead of being sorted;
    `indent` (Flask's debug output) and any type orjson does not know go to the
    default provider.
    """

    def dumps(self, obj, **kwargs) -> str:
        text = _orjson_text(obj) if kwargs.get("indent") is None else None
        return text if text is not None else super().dumps(obj, **kwargs)

    def loads(self, s, **kwargs):
        return orjson.loads(s)
