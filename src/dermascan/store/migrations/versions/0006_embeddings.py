"""The prediction's embedding: the penultimate features through the bundle's projection (16 floats, JSON), for
embedding drift. NULL on rows stored before, and for bundles exported without the features output.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("embedding", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("predictions", "embedding")
