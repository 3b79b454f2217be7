"""complainants masked by default; each unmasking logged with its purpose

Adds `complainant_unmaskings`, the log of who saw which of a complainant's fields in clear, why and when
(COMPLIANCE §3: unmasking is a logged action with a stated purpose). A new, empty table: no existing row is read
or rewritten, and its indexes are built while nothing can write to it yet.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-10 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "complainant_unmaskings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("clue_id", sa.String(length=36), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("viewed_by", sa.String(length=40), nullable=False),
        sa.Column("viewed_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complainant_unmaskings")),
    )
    with op.batch_alter_table("complainant_unmaskings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complainant_unmaskings_clue_id"), ["clue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_complainant_unmaskings_region_code"), ["region_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("complainant_unmaskings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complainant_unmaskings_region_code"))
        batch_op.drop_index(batch_op.f("ix_complainant_unmaskings_clue_id"))
    op.drop_table("complainant_unmaskings")
