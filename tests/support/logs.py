"""Lines of the server's output that tests read, as %-style templates, and how to find them in a log.

Each template is the message constant at its log site (imported below); a test looks for a line
written from it with `logged()`, fixing some of its values and leaving the others open.
"""

import re

from app.cli import NO_SERVER_MESSAGE as NO_SERVER_ANSWERS  # stderr of send-notification
from app.delivery.core import CONNECTED_LOG as USER_CONNECTED
from app.delivery.putback import DISCONNECTED_LOG as USER_DISCONNECTED
from app.delivery.sweeper import PROCESS_REAPED_LOG as PROCESS_REAPED
from app.realtime.patches import APPLIED_LOG as CORRECTIONS_IN_EFFECT
from app.services.presence.redis import REGISTERED_LOG as PRESENCE_REGISTERED
from app.services.presence.redis import UNREACHABLE_LOG as REDIS_UNREACHABLE

__all__ = [
    "CORRECTIONS_IN_EFFECT",
    "NO_SERVER_ANSWERS",
    "PRESENCE_REGISTERED",
    "PROCESS_REAPED",
    "REDIS_UNREACHABLE",
    "USER_CONNECTED",
    "USER_DISCONNECTED",
    "logged",
    "logged_values",
    "pattern",
]

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
