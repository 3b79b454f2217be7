"""RFC 3161 timestamp tokens of signed tree heads (media.custody.timestamps)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "head_timestamps",
        sa.Column("tree_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False,
                  nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("gen_time", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tsa", sa.String(length=1000), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("tsa_url", sa.String(length=1000), nullable=False),
        sa.Column("received_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tree_size"], ["tree_heads.tree_size"],
                                name=op.f("fk_head_timestamps_tree_size_tree_heads")),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_head_timestamps")),
    )


def downgrade() -> None:
    op.drop_table("head_timestamps")
