"""Initial schema: clinics, API keys, predictions, feedback, access log.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
PROBS = ("p_mel", "p_nv", "p_bcc", "p_akiec", "p_bkl", "p_df", "p_vasc")


def upgrade() -> None:
    op.create_table(
        "clinics",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_api_keys_clinic_id", "api_keys", ["clinic_id"])
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("lesion_id", sa.String(128), nullable=True),
        sa.Column("body_site", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("bundle_digest", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        *[sa.Column(p, sa.Float, nullable=False) for p in PROBS],
        sa.Column("primary_class", sa.String(8), nullable=False),
        sa.Column("melanoma_risk", sa.Float, nullable=False),
        sa.Column("melanoma_flag", sa.Boolean, nullable=False),
        sa.Column("risk_band", sa.String(16), nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("brightness", sa.Float, nullable=False),
        sa.Column("contrast", sa.Float, nullable=False),
        sa.Column("mean_r", sa.Float, nullable=False),
        sa.Column("mean_g", sa.Float, nullable=False),
        sa.Column("mean_b", sa.Float, nullable=False),
        sa.Column("image_uri", sa.Text, nullable=True),
    )
    op.create_index("ix_predictions_clinic_created", "predictions", ["clinic_id", "created_at"])
    op.create_index("ix_predictions_patient_hash", "predictions", ["patient_hash"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(36), sa.ForeignKey("predictions.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("clinician_label", sa.String(8), nullable=True),
        sa.Column("histopathology_label", sa.String(8), nullable=True),
        sa.Column("histopathology_date", sa.Date, nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("supersedes", sa.Integer, sa.ForeignKey("feedback.id"), nullable=True),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("clinic_id", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("prediction_id", sa.String(36), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
    )
    op.create_index("ix_access_log_clinic_id", "access_log", ["clinic_id"])


def downgrade() -> None:
    for table in ("access_log", "feedback", "predictions", "api_keys", "clinics"):
        op.drop_table(table)
