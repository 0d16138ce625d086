"""Shadow and canary: predictions link a shadow row to the champion's and record the shares in force; the
``serving_settings`` table holds the canary share the services re-read without a restart.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table in place
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(36), nullable=True))
        batch.add_column(sa.Column("shadow_share", sa.Float, nullable=True))
        batch.add_column(sa.Column("canary_share", sa.Float, nullable=True))
        batch.create_foreign_key("fk_predictions_shadow_of", "predictions", ["shadow_of"], ["id"])
        batch.create_index("ix_predictions_shadow_of", ["shadow_of"])
    op.create_table(
        "serving_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serving_settings")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_shadow_of")
        batch.drop_constraint("fk_predictions_shadow_of", type_="foreignkey")
        for column in ("canary_share", "shadow_share", "shadow_of"):
            batch.drop_column(column)
