"""Query helpers the services share."""

from sqlalchemy import select

from app.extensions import db


def sorted_values(column, *conditions) -> list:
    """The values of `column` in the rows that match `conditions`, sorted."""
    return list(db.session.scalars(select(column).where(*conditions).order_by(column)))
