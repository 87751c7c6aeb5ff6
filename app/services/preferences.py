"""Per-user preferences: the categories a user muted, stored and shared by every process."""

from sqlalchemy import delete, insert

from app.extensions import db
from app.models import MutedCategory
from app.protocol import PREFERENCES_UPDATED
from app.services import delivery
from app.services.queries import sorted_values


def muted(user_id: str) -> list[str]:
    """The categories `user_id` muted, sorted."""
    return sorted_values(MutedCategory.category, MutedCategory.user_id == user_id)


def set_muted(user_id: str, categories: list[str]) -> list[str]:
    """Replace the user's muted categories (validated names, no duplicates) in one transaction.

    Every socket of the user, on any process, gets `preferences_updated` with the new list.
    Rows already stored are not touched: muting applies to what is sent from now on.
    """
    wanted = sorted(categories)
    try:
        db.session.execute(delete(MutedCategory).where(MutedCategory.user_id == user_id))
        if wanted:
            db.session.execute(insert(MutedCategory), [{"user_id": user_id, "category": c} for c in wanted])
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    delivery.current().tell_user(user_id, PREFERENCES_UPDATED, {"muted": wanted}, count=False)
    return wanted
