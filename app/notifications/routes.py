"""REST routes: a user's own notifications, and the admin route that sends them."""

from flask import Blueprint, request, url_for
from werkzeug.exceptions import BadRequest

from app.auth import admin_required, current_identity, user_required
from app.schemas import (
    CreateNotificationsSchema,
    ListQuerySchema,
    NotificationSchema,
)
from app.services import notifications as service

bp = Blueprint("notifications", __name__, url_prefix="/v1")

_one = NotificationSchema()
_many = NotificationSchema(many=True)
_query = ListQuerySchema()
_create = CreateNotificationsSchema()


def _json_body() -> object:
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
    rows, next_cursor = service.list_notifications(current_identity().user_id, **args)
    headers = {}
    if next_cursor:
        params = {"limit": args["limit"], "cursor": next_cursor}
        if "status" in args:
            params["status"] = args["status"].value
        next_url = url_for("notifications.list_notifications", _external=True, **params)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return _many.dump(rows), 200, headers


@bp.put("/notifications/<notification_id>/read")
@user_required
def mark_read(notification_id: str):
    """Mark one of the caller's notifications READ; answers the updated notification."""
    return _one.dump(service.mark_read(current_identity().user_id, notification_id))


@bp.delete("/notifications/<notification_id>")
@user_required
def delete_notification(notification_id: str):
    """Delete one of the caller's notifications; 204."""
    service.delete_notification(current_identity().user_id, notification_id)
    return "", 204


@bp.post("/admin/notifications")
@admin_required
def create_notifications():
    """Send one notification to each of `userIds`; 201 with every stored notification."""
    data = _create.load(_json_body())
    created = service.create_notifications(data["user_ids"], data["message"])
    return {"notifications": [service.to_wire(n) for n in created]}, 201
