"""Categories and topics on notifications, muted categories per user, topic subscribers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notifications") as batch:
        # Existing rows become "general", the category of a send that names none.
        batch.add_column(
            sa.Column("category", sa.String(length=64), nullable=False, server_default="general")
        )
        batch.add_column(sa.Column("topic", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_notifications_user_category_created",
        "notifications",
        ["user_id", "category", "created_at", "id"],
    )
    op.create_table(
        "muted_categories",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "category"),
    )
    op.create_index("ix_muted_categories_category_user", "muted_categories", ["category", "user_id"])
    op.create_table(
        "topic_subscriptions",
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("subscribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "user_id"),
    )
    op.create_index("ix_topic_subscriptions_user_topic", "topic_subscriptions", ["user_id", "topic"])


def downgrade():
    op.drop_index("ix_topic_subscriptions_user_topic", table_name="topic_subscriptions")
    op.drop_table("topic_subscriptions")
    op.drop_index("ix_muted_categories_category_user", table_name="muted_categories")
    op.drop_table("muted_categories")
    op.drop_index("ix_notifications_user_category_created", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("topic")
        batch.drop_column("category")
