"""Drop the partial index of unread rows: the unread counts read ix_notifications_user_status_created.

Every notification row went into this index too, so every INSERT and every claim paid
for it; `status IN ('PENDING', 'DELIVERED')` finds the same rows in the index by user and status.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNREAD = "status <> 'READ'"  # as 0003 created it


def upgrade():
    op.drop_index("ix_notifications_unread", table_name="notifications")


def downgrade():
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["user_id"],
        postgresql_where=sa.text(UNREAD),
        sqlite_where=sa.text(UNREAD),
    )
