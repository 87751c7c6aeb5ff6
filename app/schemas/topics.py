"""Schemas of preferences and topic lists: the muted categories, a topic's subscribers."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from app.schemas import MAX_USER_ID_LENGTH, Name, PageLimit, UserIdList, no_nul

MAX_MUTED = 100
MAX_SUBSCRIBERS_PER_CALL = 10_000
DEFAULT_SUBSCRIBER_PAGE = 1000
MAX_SUBSCRIBER_PAGE = 10_000


class PreferencesSchema(Schema):
    """Body and answer of `/v1/preferences`: the muted categories."""

    muted = fields.List(
        Name(),
        required=True,
        validate=validate.Length(max=MAX_MUTED),
        metadata={"description": "the categories the user does not want, sorted", "uniqueItems": True},
    )

    @validates("muted")
    def _no_repeats(self, value: list[str], **_kwargs) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("Each category at most once.")


class SubscribersBodySchema(Schema):
    """Body of `PUT` / `DELETE /v1/admin/topics/{topic}/subscribers`."""

    user_ids = UserIdList(
        data_key="userIds",
        required=True,
        validate=validate.Length(min=1, max=MAX_SUBSCRIBERS_PER_CALL),
        metadata={"description": "users to add or remove; repeats count once"},
    )


class SubscriberQuerySchema(Schema):
    """Query string of `GET /v1/admin/topics/{topic}/subscribers`."""

    class Meta:
        unknown = EXCLUDE

    limit = PageLimit(DEFAULT_SUBSCRIBER_PAGE, MAX_SUBSCRIBER_PAGE)
    cursor = fields.String(
        validate=[validate.Length(min=1, max=MAX_USER_ID_LENGTH), no_nul],
        metadata={"description": 'position from the `Link: rel="next"` header (the last user id of a page)'},
    )


class TopicCountSchema(Schema):
    """Answer of adding to or removing from a topic."""

    topic = fields.String(required=True)
    added = fields.Integer(metadata={"description": "users put in it that were not in it"})
    removed = fields.Integer(metadata={"description": "users taken out that were in it"})


class SubscriberPageSchema(Schema):
    """Answer of `GET /v1/admin/topics/{topic}/subscribers`."""

    topic = fields.String(required=True)
    user_ids = fields.List(fields.String(), data_key="userIds", metadata={"description": "sorted by id"})


class UserTopicsSchema(Schema):
    """Answer of `GET /v1/topics`."""

    topics = fields.List(fields.String(), metadata={"description": "the caller's topics, sorted"})


class TopicSentSchema(Schema):
    """The answer of `POST /v1/admin/notifications` with a `topic`: counts, not objects."""

    topic = fields.String(required=True)
    recipients = fields.Integer(required=True, metadata={"description": "delivered + pending + skipped"})
    delivered = fields.Integer(required=True, metadata={"description": "stored DELIVERED: sent live"})
    pending = fields.Integer(required=True, metadata={"description": "stored PENDING: sent on connect"})
    skipped = fields.Integer(required=True, metadata={"description": "users who muted the category"})
