"""Flask commands: send a notification, sign a token, prune old notifications, keep topics."""

import json
import urllib.error
import urllib.request

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from marshmallow import ValidationError

from app.auth import create_token
from app.models import NotificationStatus
from app.schemas import CreateNotificationsSchema, notifications_to_wire, valid_name
from app.schemas.topics import SubscribersBodySchema
from app.services import delivery, retention, topics

# What send-notification says on stderr when it stores rows itself (tests read it).
NO_SERVER_MESSAGE = "no server answers at %s: storing for delivery on connect"
LIST_PAGE = 10_000  # users read per query by `topic list`


def _server_url() -> str:
    host = current_app.config["HOST"]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{current_app.config['PORT']}"


def _send_through_server(body: dict) -> dict | None:
    """POST `body` to the running server so its connected users get it live; its answer, or None
    if no server runs.

    Without a message queue only the server process knows who is connected, so
    the CLI hands the notification to it over its own admin API.
    """
    url = f"{_server_url()}/v1/admin/notifications"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {create_token('cli', admin=True, expires_in=60)}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise click.ClickException(f"the server at {url} refused: {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise click.ClickException(f"could not reach the server at {url}: {exc.reason}") from exc


def _send_here(data: dict) -> dict:
    """Store and send from this process; the answer the admin route would give."""
    content = {"category": data["category"]}
    if "topic" in data:
        return delivery.fanout().to_topic(data["topic"], data["message"], **content).to_wire()
    sent = delivery.fanout().to_users(data["user_ids"], data["message"], **content)
    return {"notifications": notifications_to_wire(sent.created), "skipped": sent.skipped}


def _summary(answer: dict) -> str:
    if "topic" in answer:
        return (
            f"topic {answer['topic']}: recipients {answer['recipients']}, delivered live "
            f"{answer['delivered']}, pending {answer['pending']}, skipped {answer['skipped']}"
        )
    statuses = answer["notifications"]
    delivered = sum(1 for n in statuses if n["status"] == NotificationStatus.DELIVERED.value)
    line = f"created {len(statuses)}, delivered live {delivered}, pending {len(statuses) - delivered}"
    skipped = len(answer.get("skipped", ()))
    return line + (f", skipped {skipped} (muted the category)" if skipped else "")


@click.command("send-notification")
@with_appcontext
@click.option("--user", "users", multiple=True, help="Target user id (repeatable).")
@click.option("--topic", default=None, help="Send to the users in this topic instead.")
@click.option("--category", default=None, help="The notification's category (default: general).")
@click.argument("message")
def send_notification(users: tuple[str, ...], topic: str | None, category: str | None, message: str) -> None:
    """Send MESSAGE to each --user, or to a --topic's users: live to connected users, else PENDING.

    With a message queue it writes and emits itself; without one it hands the
    notification to the server at HOST:PORT, the only process that knows its sockets.
    """
    if bool(users) == (topic is not None):
        raise click.UsageError("give one or more --user, or one --topic (not both)")
    body: dict = {"message": message}
    if users:
        body["userIds"] = list(users)
    if topic is not None:
        body["topic"] = topic
    if category is not None:
        body["category"] = category
    try:
        data = CreateNotificationsSchema().load(body)
    except ValidationError as exc:
        raise click.ClickException(f"invalid input: {json.dumps(exc.messages)}") from exc
    answer = None
    if not delivery.current().presence.shared:
        answer = _send_through_server(body)
        if answer is None:
            click.echo(NO_SERVER_MESSAGE % _server_url(), err=True)
    if answer is None:
        # No server, or presence in Redis and emits through the queue: this process can do it all.
        answer = _send_here(data)
    click.echo(_summary(answer))


@click.command("create-token")
@with_appcontext
@click.argument("user_id")
@click.option("--admin", is_flag=True, help="Add the claim role=admin.")
@click.option("--expires-in", type=click.IntRange(min=1), default=None, help="Lifetime in seconds.")
def create_token_command(user_id: str, admin: bool, expires_in: int | None) -> None:
    """Print a signed access token for USER_ID."""
    if not user_id:
        raise click.BadParameter("must not be empty", param_hint="USER_ID")
    click.echo(create_token(user_id, admin=admin, expires_in=expires_in))


@click.command("prune-notifications")
@with_appcontext
@click.option(
    "--older-than", "days", type=click.IntRange(min=0), required=True, help="Age in days (created before)."
)
@click.option(
    "--status",
    type=click.Choice([s.value for s in NotificationStatus], case_sensitive=False),
    default=None,
    help="Only notifications of this status, e.g. READ.",
)
def prune_notifications(days: int, status: str | None) -> None:
    """Delete notifications older than --older-than days, in batches; and expired idempotency keys.

    Safe to run from cron while the server runs: each batch is a short transaction.
    """
    chosen = NotificationStatus(status.upper()) if status else None
    deleted = retention.prune_notifications(days, chosen)
    keys = retention.prune_idempotency_keys()
    click.echo(f"deleted {deleted} notification(s), {keys} expired idempotency key(s)")


@click.group("topic")
def topic_group() -> None:
    """Keep a topic's subscribers: add, remove, list."""


def _topic_name(topic: str) -> str:
    if not valid_name(topic):
        raise click.BadParameter("lowercase a-z, 0-9, '.', '_', '-'; 1-64 characters", param_hint="TOPIC")
    return topic


def _user_ids(users: tuple[str, ...]) -> list[str]:
    try:
        return SubscribersBodySchema().load({"userIds": list(users)})["user_ids"]
    except ValidationError as exc:
        raise click.ClickException(f"invalid input: {json.dumps(exc.messages)}") from exc


def _topic_users_command(name: str):
    """`flask topic NAME TOPIC USER...`."""

    def register(function):
        users = click.argument("users", nargs=-1, required=True)(function)
        return topic_group.command(name)(with_appcontext(click.argument("topic")(users)))

    return register


@_topic_users_command("add")
def topic_add(topic: str, users: tuple[str, ...]) -> None:
    """Put USERS in TOPIC; prints how many were not in it."""
    click.echo(f"added {topics.add_subscribers(_topic_name(topic), _user_ids(users))} to {topic}")


@_topic_users_command("remove")
def topic_remove(topic: str, users: tuple[str, ...]) -> None:
    """Take USERS out of TOPIC; prints how many were in it."""
    click.echo(f"removed {topics.remove_subscribers(_topic_name(topic), _user_ids(users))} from {topic}")


@topic_group.command("list")
@with_appcontext
@click.argument("topic")
def topic_list(topic: str) -> None:
    """Print TOPIC's users, one a line, sorted."""
    after = None
    while True:
        users, after = topics.subscribers(_topic_name(topic), LIST_PAGE, after)
        for user in users:
            click.echo(user)
        if after is None:
            return


def register_commands(app: Flask) -> None:
    """Add the commands to `flask`."""
    app.cli.add_command(send_notification)
    app.cli.add_command(create_token_command)
    app.cli.add_command(prune_notifications)
    app.cli.add_command(topic_group)
