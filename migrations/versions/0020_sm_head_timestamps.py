"""RFC 3161 timestamp tokens of the SM tree's heads

`sm_head_timestamps` keeps an SM tree head's token as `head_timestamps` (0010) keeps an intl head's: the token (its
message imprint SM3 of the SM head's signed bytes), and what was read from it when it arrived. A table of its own
beside `sm_tree_heads` (0017), not a column on it, as the SM tree's nodes and heads are beside the intl ones: no
existing table is rewritten (the foreign key locks `sm_tree_heads`, which only head signing writes, for the moment
of its creation), and the intl tables and their queries stay exactly as they were. It starts empty: SM heads signed
before it get their tokens from `fieldcase custody timestamp`, or from the timestamp jobs the sweep queues.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-12 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sm_head_timestamps",
        sa.Column("tree_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False,
                  nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("gen_time", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tsa", sa.String(length=1000), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("tsa_url", sa.String(length=1000), nullable=False),
        sa.Column("received_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tree_size"], ["sm_tree_heads.tree_size"],
                                name=op.f("fk_sm_head_timestamps_tree_size_sm_tree_heads")),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_sm_head_timestamps")),
    )


def downgrade() -> None:
    op.drop_table("sm_head_timestamps")
