"""Lines of the server's output that tests read, as %-style templates, and how to find them in a log.

Each template is the message at its log site (named below); a test looks for a line
written from it with `logged()`, fixing some of its values and leaving the others open.
"""

import re

# app/services/delivery.py
USER_CONNECTED = "user %s connected (sid %s): %d pending sent"
USER_DISCONNECTED = "user %s disconnected (sid %s); %d unacknowledged put back"
PROCESS_REAPED = "process %s stopped without closing its %d user(s); %d notification(s) back to PENDING"
# app/services/presence/redis.py
PRESENCE_REGISTERED = "presence: registered %d socket(s) of %d user(s) as process %s (was %s)"
REDIS_UNREACHABLE = (
    "presence: Redis unreachable (%s); only this process's own sockets count "
    "until it is back, other users' notifications stay PENDING"
)
# app/cli.py (`send-notification`, on stderr)
NO_SERVER_ANSWERS = "no server answers at %s: storing for delivery on connect"

_PLACEHOLDER = re.compile(r"%(?:%|[-#0 +]*\d*(?:\.\d+)?[sdrif])")


def pattern(template: str, *values) -> re.Pattern:
    """A regular expression for one line written from `template`.

    The n-th placeholder is a group that matches `values[n]` exactly when it is
    given and not None, anything on the line otherwise.
    """
    parts, given, start = [], iter(values), 0
    for placeholder in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[start : placeholder.start()]))
        start = placeholder.end()
        if placeholder.group() == "%%":
            parts.append("%")
            continue
        value = next(given, None)
        parts.append(f"({re.escape(str(value))})" if value is not None else "(.*?)")
    parts.append(re.escape(template[start:]))
    return re.compile("".join(parts))


def logged(text: str, template: str, *values) -> bool:
    """Whether `text` holds a line written from `template` (see `pattern`)."""
    return pattern(template, *values).search(text) is not None


def logged_values(text: str, template: str, *values) -> list[tuple[str, ...]]:
    """The values of every line of `text` written from `template`, in order."""
    return [match.groups() for match in pattern(template, *values).finditer(text)]
