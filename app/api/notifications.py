"""REST routes: a user's own notifications, and the admin route that sends them."""

import re

from flask import Blueprint, request, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter

from app.auth import admin_required, current_identity, user_required
from app.schemas import (
    CreateNotificationsSchema,
    ListQuerySchema,
    notification_to_wire,
    notifications_to_wire,
    utc_iso,
)
from app.services import delivery, idempotency, inbox

bp = Blueprint("notifications", __name__, url_prefix="/v1")


class NotificationIdConverter(BaseConverter):
    """A path segment that may be a notification id: not the name of a route of its own.

    Without it, `DELETE /v1/notifications/<id>` also matches /notifications/read-all and
    /notifications/unread-count, whose 405 answers would then list DELETE in `Allow`.
    (Malformed ids still reach the views, which answer 401 before 404.)
    """

    regex = r"(?!(?:read-all|unread-count)(?:/|$))[^/]+"


# First of the blueprint's deferred set-up, so the rules below can use it.
bp.record_once(
    lambda state: state.app.url_map.converters.setdefault("notification_id", NotificationIdConverter)
)

IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_FORM = re.compile(r"[\x20-\x7e]{1,255}")

_query = ListQuerySchema()
_create = CreateNotificationsSchema()


def json_body() -> object:
    """The request's JSON body; 400 when it is not JSON or does not parse."""
    if not request.is_json:
        raise BadRequest("Send the body as JSON (Content-Type: application/json).")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The body is not valid JSON.")
    return body


@bp.get("/notifications")
@user_required
def list_notifications():
    """The caller's notifications, newest first; `Link: rel="next"` when more exist."""
    args = _query.load(request.args)
    rows, next_cursor = inbox.list_notifications(current_identity().user_id, **args)
    headers = {}
    if next_cursor:
        params = {"limit": args["limit"], "cursor": next_cursor}
        if "status" in args:
            params["status"] = args["status"].value
        if "category" in args:
            params["category"] = args["category"]
        next_url = url_for("notifications.list_notifications", _external=True, **params)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return [notification_to_wire(n) for n in rows], 200, headers


@bp.put("/notifications/<notification_id:notification_id>/read")
@user_required
def mark_read(notification_id: str):
    """Mark one of the caller's notifications READ; answers the updated notification."""
    return notification_to_wire(inbox.mark_read(current_identity().user_id, notification_id))


@bp.delete("/notifications/<notification_id:notification_id>")
@user_required
def delete_notification(notification_id: str):
    """Delete one of the caller's notifications; 204."""
    inbox.delete_notification(current_identity().user_id, notification_id)
    return "", 204


@bp.get("/notifications/unread-count")
@user_required
def unread_count():
    """How many of the caller's notifications are not READ."""
    count = inbox.unread_count(current_identity().user_id)
    return {"count": count}


@bp.post("/notifications/read-all")
@user_required
def read_all():
    """Mark every unread notification of the caller READ, with one `readAt`; a repeat updates 0."""
    updated, read_at = inbox.read_all(current_identity().user_id)
    return {"updated": updated, "readAt": utc_iso(read_at)}


@bp.post("/admin/notifications")
@admin_required
def create_notifications():
    """Send a notification to each of `userIds`, or to a `topic`'s users; 201.

    To `userIds`: every stored notification, and who was `skipped` for a muted category. To
    a topic: counts only. With an `Idempotency-Key` header, a retry with the same body
    answers as the first time (header `Idempotent-Replayed: true`) and stores nothing.
    """
    body = json_body()
    data = _create.load(body)
    sender = current_identity().user_id
    content = {"category": data["category"], "data": data["data"], "created_by": sender}

    def send(claim=None) -> dict:
        if "topic" in data:
            return (
                delivery.fanout()
                .to_topic(data["topic"], data["message"], before_commit=claim, **content)
                .to_wire()
            )
        sent = delivery.fanout().to_users(data["user_ids"], data["message"], before_commit=claim, **content)
        return {
            "notifications": notifications_to_wire(sent.created, sender=True),
            "skipped": sent.skipped,
        }

    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return send(), 201
    if not IDEMPOTENCY_KEY_FORM.fullmatch(key):
        raise BadRequest(f"{IDEMPOTENCY_KEY} must be 1-255 printable ASCII characters.")
    answer, replayed = idempotency.send_once(sender, key, body, send)
    return answer, 201, {"Idempotent-Replayed": "true"} if replayed else {}
