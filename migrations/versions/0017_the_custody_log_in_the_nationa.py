"""the custody log in the national algorithms too: an SM3 tree with SM2 heads

Two tables of their own (not a suite column on merkle_nodes / tree_heads): the SHA-256 tree's rows, keys and
queries stay exactly as they were, no existing table is rewritten, and the append path reads each tree through its
own primary key. Both start empty: with FIELDCASE_CUSTODY_SUITES=intl,sm the SM tree is built over the existing
leaves by `fieldcase custody build-sm-tree` (media.custody.log.build_sm_tree), and kept in step by every append.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sm_merkle_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_sm_merkle_nodes")),
    )
    op.create_table(
        "sm_tree_heads",
        sa.Column(
            "tree_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.String(length=40), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_sm_tree_heads")),
    )


def downgrade() -> None:
    op.drop_table("sm_tree_heads")
    op.drop_table("sm_merkle_nodes")
