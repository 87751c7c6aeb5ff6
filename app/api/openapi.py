"""The OpenAPI document, built from the app's URL map and the marshmallow schemas."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from app.protocol import NAME_PATTERN
from app.schemas import (
    CONFIG_LIMITS,
    CreateNotificationsSchema,
    ErrorSchema,
    HealthSchema,
    ListQuerySchema,
    NotificationListSchema,
    NotificationSchema,
    ReadAllSchema,
    UnreadCountSchema,
)
from app.schemas.topics import (
    PreferencesSchema,
    SubscriberPageSchema,
    SubscriberQuerySchema,
    SubscribersBodySchema,
    TopicCountSchema,
    TopicSentSchema,
    UserTopicsSchema,
)

API_VERSION = "1.0.0"


def _error(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": "Error"}}}
    if headers:
        response["headers"] = headers
    return response


def _json(schema, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _header(description: str, schema: dict) -> dict:
    return {"description": description, "required": True, "schema": schema}


_ID = {
    "in": "path",
    "name": "notification_id",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_TOPIC = {
    "in": "path",
    "name": "topic",
    "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 64},
}
# What every /v1 route may answer besides its own: no acceptable token, too many requests.
_API_ERRORS = {
    "401": _error(
        "missing, invalid or expired token",
        {
            "WWW-Authenticate": _header(
                'the challenge: `Bearer realm="notifications"`, with `error="invalid_token"` '
                "when a token was sent but is not acceptable",
                {"type": "string", "pattern": "^Bearer "},
            )
        },
    ),
    "429": _error(
        "rate limited (error `too_many_requests`)",
        {"Retry-After": _header("seconds to wait before trying again", {"type": "integer", "minimum": 0})},
    ),
}
_NOT_FOUND = {"404": _error("no such notification of the caller's (or a malformed id)")}

# What each endpoint takes and answers; paths and methods come from the URL map.
OPERATIONS = {
    "notifications.list_notifications": {
        "parameters": [{"in": "query", "schema": ListQuerySchema}],
        "responses": {
            "200": {
                **_json(NotificationSchema(many=True), "the page, newest first"),
                "headers": {
                    "Link": {"description": 'rel="next": the next page', "schema": {"type": "string"}}
                },
            },
            "400": _error("bad limit, status or cursor"),
            **_API_ERRORS,
        },
    },
    "notifications.mark_read": {
        "parameters": [_ID],
        "responses": {"200": _json("Notification", "the notification, READ"), **_API_ERRORS, **_NOT_FOUND},
    },
    "notifications.delete_notification": {
        "parameters": [_ID],
        "responses": {"204": {"description": "deleted"}, **_API_ERRORS, **_NOT_FOUND},
    },
    "notifications.unread_count": {
        "responses": {"200": _json(UnreadCountSchema, "the caller's notifications not READ"), **_API_ERRORS},
    },
    "notifications.read_all": {
        "responses": {"200": _json(ReadAllSchema, "how many were marked READ, their readAt"), **_API_ERRORS},
    },
    "notifications.create_notifications": {
        "parameters": [
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "description": "makes a retry safe: the same key and body from the same admin within "
                "24 hours answer as the first time and store nothing",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CreateNotificationsSchema}},
        },
        "responses": {
            "201": {
                **_json(
                    {"oneOf": [NotificationListSchema, TopicSentSchema]},
                    "to `userIds`: one notification per distinct user who did not mute the category, "
                    "and who was skipped; to a `topic`: counts",
                ),
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true`: the stored answer of an earlier request with the key",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
            },
            # Not 415: the contract answers a body that is not JSON with 400.
            "400": _error("invalid body, a Content-Type other than JSON, or a malformed Idempotency-Key"),
            "403": _error("the token is not an admin's"),
            "409": _error("a request with this Idempotency-Key is still being processed"),
            "413": _error("body over the size limit (MAX_CONTENT_LENGTH); nothing stored"),
            "422": _error("this Idempotency-Key was used with another body (`idempotency_key_reused`)"),
            **_API_ERRORS,
        },
    },
    "topics.get_preferences": {
        "responses": {
            "200": _json(PreferencesSchema, "the caller's muted categories, sorted"),
            **_API_ERRORS,
        },
    },
    "topics.put_preferences": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": PreferencesSchema}}},
        "responses": {
            "200": _json(PreferencesSchema, "the muted categories now, sorted"),
            "400": _error("a bad name, a repeated one, over 100, or a body that is not JSON"),
            **_API_ERRORS,
        },
    },
    "topics.list_my_topics": {
        "responses": {"200": _json(UserTopicsSchema, "the topics the caller is in"), **_API_ERRORS},
    },
    "topics.leave_topic": {
        "parameters": [_TOPIC],
        "responses": {
            "204": {"description": "left (or was not in it)"},
            "400": _error("bad name"),
            **_API_ERRORS,
        },
    },
    "topics.add_subscribers": {
        "parameters": [_TOPIC],
        "requestBody": {"required": True, "content": {"application/json": {"schema": SubscribersBodySchema}}},
        "responses": {
            "200": _json(TopicCountSchema, "`added`: how many were not in it"),
            "400": _error("bad name or body"),
            "403": _error("the token is not an admin's"),
            **_API_ERRORS,
        },
    },
    "topics.remove_subscribers": {
        "parameters": [_TOPIC],
        "requestBody": {"required": True, "content": {"application/json": {"schema": SubscribersBodySchema}}},
        "responses": {
            "200": _json(TopicCountSchema, "`removed`: how many were in it"),
            "400": _error("bad name or body"),
            "403": _error("the token is not an admin's"),
            **_API_ERRORS,
        },
    },
    "topics.list_subscribers": {
        "parameters": [_TOPIC, {"in": "query", "schema": SubscriberQuerySchema}],
        "responses": {
            "200": {
                **_json(SubscriberPageSchema, "a page of the topic's users, sorted by id"),
                "headers": {
                    "Link": {"description": 'rel="next": the next page', "schema": {"type": "string"}}
                },
            },
            "400": _error("bad name, limit or cursor"),
            "403": _error("the token is not an admin's"),
            **_API_ERRORS,
        },
    },
    "site.healthz": {
        "security": [],
        "responses": {"200": _json(HealthSchema, "the database answers"), "503": _error("it does not")},
    },
    "site.readyz": {
        "security": [],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "checks": {
                            "type": "object",
                            "description": "`database`, and with a message queue `redis` and `subscription`",
                            "additionalProperties": {"type": "string", "enum": ["ok"]},
                        },
                    },
                },
                "ready: the database answers and, with a message queue, Redis answers and the "
                "subscription is up",
            ),
            "503": _error("not ready (error `unavailable`); `details` names each failing check"),
        },
    },
    "ops.metrics_exposition": {
        "security": [],
        "responses": {
            "200": {
                "description": "this process's metrics, in the Prometheus text format (or OpenMetrics, "
                "when the Accept header asks for it)",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
            },
            "401": _error(
                "METRICS_TOKEN is set and the request does not carry it as `Authorization: Bearer`",
                {"WWW-Authenticate": _header("the challenge", {"type": "string", "pattern": "^Bearer "})},
            ),
        },
    },
    "site.openapi": {
        "security": [],
        "responses": {"200": _json({"type": "object"}, "this document")},
    },
}


def _config_limits(app: Flask):
    """An apispec attribute function: the keywords a field's CONFIG_LIMITS metadata names, valued
    from `app`'s config, so that the document states the limits this app enforces."""

    def config_limits(_converter, field, **_kwargs) -> dict:
        return {keyword: app.config[name] for keyword, name in field.metadata.get(CONFIG_LIMITS, {}).items()}

    return config_limits


def build_spec(app: Flask) -> dict:
    """The OpenAPI 3 document of the routes listed in OPERATIONS."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="Notification service",
        version=API_VERSION,
        openapi_version="3.0.3",
        plugins=[marshmallow],
        security=[{"bearerAuth": []}],
    )
    marshmallow.converter.add_attribute_function(_config_limits(app))
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Notification", schema=NotificationSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        operation = OPERATIONS.get(rule.endpoint)
        if operation is None:
            continue
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        summary = (view.__doc__ or "").strip().splitlines()[0]
        spec.path(
            path=path,
            operations={m.lower(): {"summary": summary, **operation} for m in methods},
        )
    document = spec.to_dict()
    # Exactly one of the two audiences: both, or neither, is refused (marshmallow's schema
    # validator; apispec cannot say it from the schema).
    document["components"]["schemas"]["CreateNotifications"]["oneOf"] = [
        {"required": ["userIds"]},
        {"required": ["topic"]},
    ]
    return document
