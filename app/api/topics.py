"""REST routes of preferences and topics: a user's muted categories and topics, the admin's topic lists."""

from flask import Blueprint, request, url_for
from werkzeug.exceptions import BadRequest

from app.api.notifications import json_body
from app.auth import admin_required, current_identity, user_required
from app.schemas import valid_name
from app.schemas.topics import PreferencesSchema, SubscriberQuerySchema, SubscribersBodySchema
from app.services import preferences, topics

bp = Blueprint("topics", __name__, url_prefix="/v1")

_preferences = PreferencesSchema()
_subscribers = SubscribersBodySchema()
_subscriber_query = SubscriberQuerySchema()


def _topic(name: str) -> str:
    """The topic named in the path; 400 when it is not a valid name."""
    if not valid_name(name):
        raise BadRequest("A topic name is 1-64 characters: lowercase a-z, 0-9, '.', '_', '-', not first.")
    return name


@bp.get("/preferences")
@user_required
def get_preferences():
    """The caller's muted categories."""
    return {"muted": preferences.muted(current_identity().user_id)}


@bp.put("/preferences")
@user_required
def put_preferences():
    """Replace the caller's muted categories; their other sockets get `preferences_updated`."""
    wanted = _preferences.load(json_body())["muted"]
    return {"muted": preferences.set_muted(current_identity().user_id, wanted)}


@bp.get("/topics")
@user_required
def list_my_topics():
    """The topics the caller is in."""
    return {"topics": topics.topics_of(current_identity().user_id)}


@bp.delete("/topics/<topic>")
@user_required
def leave_topic(topic: str):
    """The caller leaves a topic (also when not in it); 204."""
    topics.leave(current_identity().user_id, _topic(topic))
    return "", 204


@bp.put("/admin/topics/<topic>/subscribers")
@admin_required
def add_subscribers(topic: str):
    """Put users in a topic; how many were not in it."""
    return _change_subscribers(topic, topics.add_subscribers, "added")


@bp.delete("/admin/topics/<topic>/subscribers")
@admin_required
def remove_subscribers(topic: str):
    """Take users out of a topic; how many were in it."""
    return _change_subscribers(topic, topics.remove_subscribers, "removed")


def _change_subscribers(topic: str, change, counted: str) -> dict:
    name = _topic(topic)
    return {"topic": name, counted: change(name, _subscribers.load(json_body())["user_ids"])}


@bp.get("/admin/topics/<topic>/subscribers")
@admin_required
def list_subscribers(topic: str):
    """A topic's users sorted by id, a page at a time (`Link: rel="next"`); unknown topic: empty."""
    name = _topic(topic)
    args = _subscriber_query.load(request.args)
    users, after = topics.subscribers(name, args["limit"], args.get("cursor"))
    headers = {}
    if after is not None:
        next_url = url_for(
            "topics.list_subscribers", topic=name, limit=args["limit"], cursor=after, _external=True
        )
        headers["Link"] = f'<{next_url}>; rel="next"'
    return {"topic": name, "userIds": users}, 200, headers
