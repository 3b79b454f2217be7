"""repair, never orphan: corrections, unmatched institutions, a finding's category kept as the phone sent it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("corrects", sa.String(length=36), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("op", sa.String(length=36), nullable=True),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column("by", sa.String(length=40), nullable=False),
        sa.Column("at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_corrections_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("op", name=op.f("uq_corrections_op")),
    )
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_corrections_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_corrections_subject", ["subject", "subject_id"], unique=False)
    # A finding keeps the category its phone sent, also one the catalogue does not know (it then needs correction).
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_constraint("fk_findings_category_violation_categories", type_="foreignkey")
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unmatched", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.alter_column("unmatched", server_default=None)  # the default was only for existing rows


def downgrade() -> None:
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.drop_column("unmatched")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_findings_category_violation_categories", "violation_categories",
                                    ["category"], ["code"])
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        batch_op.drop_index("ix_corrections_subject")
        batch_op.drop_index(batch_op.f("ix_corrections_case_id"))
    op.drop_table("corrections")
