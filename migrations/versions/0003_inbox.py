"""The inbox: payload data, sender, the unread index, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UNREAD = "status <> 'READ'"


def upgrade():
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("data", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["user_id"],
        postgresql_where=sa.text(UNREAD),
        sqlite_where=sa.text(UNREAD),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("admin", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("admin", "key"),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade():
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_notifications_unread", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("created_by")
        batch.drop_column("data")
