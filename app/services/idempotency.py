"""Idempotent admin sends: the same `Idempotency-Key` and body answer as the first time.

Keys are per admin (`sub`) and kept IDEMPOTENCY_KEY_HOURS (24) hours. The key is
claimed inside the transaction that stores the notifications, so either both are
stored or neither; a concurrent request with the same key waits on that row (the
primary key) and then finds the first answer, or, if the first request is still
sending after IDEMPOTENCY_WAIT_SECONDS, gets 409.
"""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import DomainError
from app.extensions import db, socketio
from app.models import IdempotencyKey, utcnow

POLL_SECONDS = 0.05


class IdempotencyKeyReusedError(DomainError):
    """The key was used with another body."""

    status = 422
    code = "idempotency_key_reused"


class IdempotencyConflictError(DomainError):
    """A request with the same key is still being processed."""

    status = 409
    code = "idempotency_key_in_use"


def request_hash(body: object) -> str:
    """SHA-256 of the body as canonical JSON: the same value hashes the same, key order aside."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


Send = Callable[[Callable[[], None]], dict]


def send_once(admin: str, key: str, body: object, send: Send) -> tuple[dict, bool]:
    """Answer a send made with `key`: (answer, replayed).

    `send(claim)` stores and sends the notifications, calling `claim()` inside its
    transaction, and returns the answer, which is then kept for replays.
    """
    digest = request_hash(body)
    _forget_expired(admin, key)
    found = _find(admin, key)
    if found is not None:
        return _replay(found, digest, admin, key), True

    def claim() -> None:
        db.session.add(IdempotencyKey(admin=admin, key=key, request_hash=digest, answer=None))
        db.session.flush()

    try:
        answer = send(claim)
    except IntegrityError:  # a concurrent request with this key stored first
        db.session.rollback()
        found = _find(admin, key)
        if found is None:
            raise
        return _replay(found, digest, admin, key), True
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.admin == admin, IdempotencyKey.key == key)
        .values(answer=answer)
    )
    db.session.commit()
    return answer, False


def _replay(found, digest: str, admin: str, key: str) -> dict:
    if found.request_hash != digest:
        raise IdempotencyKeyReusedError("This Idempotency-Key was used with another body.")
    deadline = time.monotonic() + current_app.config["IDEMPOTENCY_WAIT_SECONDS"]
    while found.answer is None:  # the first request stored its rows and is still sending them
        if time.monotonic() >= deadline:
            raise IdempotencyConflictError("A request with this Idempotency-Key is still in progress.")
        socketio.sleep(POLL_SECONDS)
        found = _find(admin, key)
        if found is None:
            raise IdempotencyConflictError("A request with this Idempotency-Key is still in progress.")
    return found.answer


def _find(admin: str, key: str):
    """The key's (request_hash, answer), or None."""
    found = db.session.execute(
        select(IdempotencyKey.request_hash, IdempotencyKey.answer).where(
            IdempotencyKey.admin == admin, IdempotencyKey.key == key
        )
    ).first()
    db.session.commit()  # end the read transaction, so the next look sees new rows
    return found


def _oldest_kept():
    return utcnow() - timedelta(hours=current_app.config["IDEMPOTENCY_KEY_HOURS"])


def _forget_expired(admin: str, key: str) -> None:
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.admin == admin,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < _oldest_kept(),
        )
    )
    db.session.commit()


def expire_keys() -> int:
    """Delete every key older than IDEMPOTENCY_KEY_HOURS; how many."""
    expired = delete(IdempotencyKey).where(IdempotencyKey.created_at < _oldest_kept())
    deleted = db.session.execute(expired).rowcount
    db.session.commit()
    return deleted
