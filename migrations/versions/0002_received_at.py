"""Durable delivery confirmation: notifications.received_at and the sweeper's index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNCONFIRMED = "status = 'DELIVERED' AND received_at IS NULL"


def upgrade():
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    # What was delivered before confirmations existed counts as received: the sweeper
    # must not send a user their whole history again.
    op.execute(
        "UPDATE notifications SET received_at = delivered_at "
        "WHERE status IN ('DELIVERED', 'READ') AND delivered_at IS NOT NULL"
    )
    op.create_index(
        "ix_notifications_unconfirmed",
        "notifications",
        ["delivered_at"],
        postgresql_where=sa.text(UNCONFIRMED),
        sqlite_where=sa.text(UNCONFIRMED),
    )


def downgrade():
    op.drop_index("ix_notifications_unconfirmed", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("received_at")
