"""The category index holds only rows of a category other than "general".

Almost every row is of the default category, and every such row went into
ix_notifications_user_category_created on each INSERT and each claim, for a listing that
finds a page of them in ix_notifications_user_created_id anyway. The partial index keeps
what a page of a rare category needs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OTHER_CATEGORY = "category <> 'general'"  # as app.models.OTHER_CATEGORY
COLUMNS = ["user_id", "category", "created_at", "id"]


def upgrade():
    op.drop_index("ix_notifications_user_category_created", table_name="notifications")
    op.create_index(
        "ix_notifications_user_category_created_other",
        "notifications",
        COLUMNS,
        postgresql_where=sa.text(OTHER_CATEGORY),
        sqlite_where=sa.text(OTHER_CATEGORY),
    )


def downgrade():
    op.drop_index("ix_notifications_user_category_created_other", table_name="notifications")
    op.create_index("ix_notifications_user_category_created", "notifications", COLUMNS)
