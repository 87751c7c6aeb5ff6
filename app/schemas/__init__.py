"""Marshmallow schemas: what goes in and out on the wire (camelCase); topics.py has the topics' own,
wire.py the notifications' view built directly on the hot paths."""

import json
import re

from flask import current_app
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from app.models import NotificationStatus
from app.protocol import DEFAULT_CATEGORY, NAME_PATTERN
from app.schemas.wire import notification_to_wire, notifications_to_wire, utc_iso  # noqa: F401  (the views' imports)

MAX_USER_ID_LENGTH = 255
MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 50

# Field metadata naming JSON Schema keywords whose values are settings of the running app,
# e.g. {"maxLength": "MAX_MESSAGE_LENGTH"}: the OpenAPI document states the limits it enforces.
CONFIG_LIMITS = "config_limits"
NAME_FORM = re.compile(NAME_PATTERN)

# The characters `str.isspace()` counts as whitespace (what `_not_blank` strips), spelled
# out: JSON Schema's `\s` is ECMA-262's, which differs from Python's.
WHITESPACE_CLASS = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A text the schemas accept: some character other than whitespace, and no NUL anywhere.
TEXT_PATTERN = rf"^[^\u0000]*[^\u0000{WHITESPACE_CLASS}][^\u0000]*$"
# A cursor as `inbox.encode_cursor` writes it: the row's `createdAt` in microseconds since
# 1970 UTC, a dash, its id in hex (empty: the first page). Every string of this form names a
# position, so a client generated from the OpenAPI document sends only cursors it accepts.
CURSOR_PATTERN = r"^(?:[0-9]{1,17}-[0-9a-f]{32})?$"


class UTCDateTime(fields.DateTime):
    """A timestamp on the wire: see `utc_iso`."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value)


class NotificationSchema(Schema):
    """A notification as clients see it."""

    id = fields.String(dump_only=True)
    user_id = fields.String(data_key="userId", dump_only=True)
    message = fields.String(dump_only=True)
    status = fields.Enum(NotificationStatus, by_value=True, dump_only=True)
    created_at = UTCDateTime(data_key="createdAt", dump_only=True)
    delivered_at = UTCDateTime(data_key="deliveredAt", dump_only=True, allow_none=True)
    read_at = UTCDateTime(data_key="readAt", dump_only=True, allow_none=True)
    data = fields.Dict(
        dump_only=True, allow_none=True, metadata={"description": "the sender's JSON object, or null"}
    )
    category = fields.String(dump_only=True, metadata={"description": "its category (`general` by default)"})
    topic = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "the topic it went to; null for a direct send"},
    )


class SentNotificationSchema(NotificationSchema):
    """A notification as the admin who sent it sees it: with who sent it."""

    created_by = fields.String(data_key="createdBy", dump_only=True, allow_none=True)


class NotificationListSchema(Schema):
    """The body of `POST /v1/admin/notifications`'s answer."""

    notifications = fields.List(fields.Nested(SentNotificationSchema))
    skipped = fields.List(
        fields.String(), metadata={"description": "users who muted the category: nothing stored for them"}
    )


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be empty or only whitespace.")


def no_nul(value: str) -> None:
    # PostgreSQL cannot store NUL in text: refused here rather than a 500 at the INSERT.
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")


class UserIdList(fields.List):
    """A list of user ids, each 1-255 characters, not only whitespace, without NUL.

    A list whose ids are all acceptable passes in one loop; marshmallow's per-item
    field machinery, which costs more than the INSERT at 10,000 ids (bench/README.md,
    "Measurements behind the code"), only runs to word the errors of a list that has some.
    """

    def __init__(self, **kwargs) -> None:
        item = fields.String(
            validate=[validate.Length(min=1, max=MAX_USER_ID_LENGTH), _not_blank, no_nul],
            metadata={"pattern": TEXT_PATTERN},
        )
        super().__init__(item, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is list and all(
            type(u) is str and 0 < len(u) <= MAX_USER_ID_LENGTH and not u.isspace() and "\x00" not in u
            for u in value
        ):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


def Name(**kwargs) -> fields.String:  # noqa: N802  (a field factory, used like a field class)
    """A category or topic name: lowercase letters, digits, `.`, `_`, `-`; 1-64 characters."""
    metadata = {"description": "a name: ^[a-z0-9][a-z0-9._-]{0,63}$", **kwargs.pop("metadata", {})}
    return fields.String(
        validate=validate.Regexp(
            NAME_PATTERN, error="Not a valid name: lowercase a-z, 0-9, '.', '_', '-'; 1-64."
        ),
        metadata=metadata,
        **kwargs,
    )


def valid_name(value: str) -> bool:
    """Whether `value` is a category or topic name (for path segments, which no schema loads)."""
    return isinstance(value, str) and NAME_FORM.fullmatch(value) is not None


class CreateNotificationsSchema(Schema):
    """Body of `POST /v1/admin/notifications`: who gets it and what it says."""

    user_ids = UserIdList(
        data_key="userIds",
        metadata={
            "description": "who gets it; repeats count once (at most maxItems distinct ids); "
            "exactly one of `userIds` and `topic`",
            "minItems": 1,
            CONFIG_LIMITS: {"maxItems": "MAX_RECIPIENTS"},
        },
    )
    topic = Name(
        metadata={"description": "send to the users in this topic at this moment instead of `userIds`"}
    )
    category = Name(
        load_default=DEFAULT_CATEGORY, metadata={"description": "its category; `general` by default"}
    )
    message = fields.String(
        required=True,
        validate=[_not_blank, no_nul],
        metadata={
            "description": "the text, not only whitespace",
            "minLength": 1,
            "pattern": TEXT_PATTERN,
            CONFIG_LIMITS: {"maxLength": "MAX_MESSAGE_LENGTH"},
        },
    )

    data = fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "any JSON object, stored and sent with it (e.g. `url`: where to go when "
            "clicked); at most x-maxBytes bytes as compact UTF-8 JSON",
            CONFIG_LIMITS: {"x-maxBytes": "MAX_DATA_BYTES"},
        },
    )

    @validates("data")
    def _check_data(self, value: dict | None, **_kwargs) -> None:
        if value is None:
            return
        limit = current_app.config["MAX_DATA_BYTES"]
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise ValidationError(f"At most {limit} bytes as compact UTF-8 JSON ({size} given).")

    @validates_schema
    def _one_audience(self, data: dict, **_kwargs) -> None:
        if ("user_ids" in data) == ("topic" in data):
            raise ValidationError("Give exactly one of `userIds` and `topic`.", "_schema")

    @validates("user_ids")
    def _check_user_ids(self, value: list[str], **_kwargs) -> None:
        limit = current_app.config["MAX_RECIPIENTS"]
        if not value:
            raise ValidationError("Give at least one user id.")
        if len(set(value)) > limit:
            raise ValidationError(f"At most {limit} distinct user ids per request.")

    @validates("message")
    def _check_message(self, value: str, **_kwargs) -> None:
        limit = current_app.config["MAX_MESSAGE_LENGTH"]
        if len(value) > limit:
            raise ValidationError(f"At most {limit} characters.")


def PageLimit(default: int, maximum: int) -> fields.Integer:  # noqa: N802  (a field factory)
    """The `limit` of a paged list: 1 to `maximum`, `default` when absent."""
    return fields.Integer(
        load_default=default,
        validate=validate.Range(min=1, max=maximum),
        metadata={"description": f"page size, 1-{maximum}"},
    )


class ListQuerySchema(Schema):
    """Query string of `GET /v1/notifications`."""

    class Meta:
        unknown = EXCLUDE

    limit = PageLimit(DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    # No load_default on these two: absent stays absent, and the document shows no `null`.
    status = fields.Enum(
        NotificationStatus,
        by_value=True,
        metadata={"type": "string", "description": "only notifications of this status (any case)"},
    )
    category = Name(metadata={"description": "only notifications of this category"})
    cursor = fields.String(
        validate=validate.Regexp(CURSOR_PATTERN),
        metadata={"description": 'position from the `Link: rel="next"` header'},
    )

    @pre_load
    def _status_any_case(self, data, **_kwargs):
        if "status" in data and isinstance(data["status"], str):
            data = dict(data)
            data["status"] = data["status"].upper()
        return data


class ErrorSchema(Schema):
    """The one error envelope of every failed request."""

    error = fields.String(required=True, metadata={"description": "machine-readable code"})
    message = fields.String(required=True, metadata={"description": "text for a person"})
    details = fields.Dict(metadata={"description": "per-field messages on validation errors"})


class HealthSchema(Schema):
    """Answer of `GET /healthz`."""

    status = fields.String()


class UnreadCountSchema(Schema):
    """Answer of `GET /v1/notifications/unread-count` and payload of `unread_count`."""

    count = fields.Integer(required=True, metadata={"description": "the user's notifications not READ"})


class ReadAllSchema(Schema):
    """Answer of `POST /v1/notifications/read-all`."""

    updated = fields.Integer(required=True, metadata={"description": "how many this call marked READ"})
    read_at = UTCDateTime(data_key="readAt", required=True, metadata={"description": "their one readAt"})
