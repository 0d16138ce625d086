"""Monitoring: the image-quality features stored with each prediction (sharpness, grey-world deviation,
dark-corner share; the older rows keep NULL: they were never measured), an index for the monitor's time
windows, and a role on API keys (``clinic`` or ``operator``: only operator keys read the monitoring page).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FEATURES = ("sharpness", "grey_world", "dark_corner")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        for column in FEATURES:
            batch.add_column(sa.Column(column, sa.Float, nullable=True))
        batch.create_index("ix_predictions_created_at", ["created_at"])
    with op.batch_alter_table("api_keys") as batch:
        # existing keys are clinics' keys: the server default fills them in
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="clinic"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_created_at")
        for column in reversed(FEATURES):
            batch.drop_column(column)
