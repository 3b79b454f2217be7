"""witness cosignatures of the custody log's checkpoints (c2sp.org/tlog-cosignature)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "witness_cosignatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("tree_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("key_hash", sa.String(length=8), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("received_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tree_size"], ["tree_heads.tree_size"],
                                name=op.f("fk_witness_cosignatures_tree_size_tree_heads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_witness_cosignatures")),
        sa.UniqueConstraint("origin", "tree_size", "key_hash",
                            name=op.f("uq_witness_cosignatures_origin_tree_size_key_hash")),
    )


def downgrade() -> None:
    op.drop_table("witness_cosignatures")
