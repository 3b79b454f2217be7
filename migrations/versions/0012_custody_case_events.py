"""the case whose server facts a custody leaf binds (case_opened, case_changed, case_witnessed), indexed for packages

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CASE_ACTIONS = ("case_opened", "case_changed", "case_witnessed")


def upgrade() -> None:
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_custody_events_case_id_leaf_index", ["case_id", "leaf_index"], unique=False)
    # case leaves written before this column (none in a release, but a test build may have some): the leaf decides
    events = sa.table("custody_events", sa.column("leaf_index", sa.BigInteger()), sa.column("leaf", sa.Text()),
                      sa.column("action", sa.String()), sa.column("case_id", sa.String()))
    bind = op.get_bind()
    rows = bind.execute(sa.select(events.c.leaf_index, events.c.leaf).where(events.c.action.in_(CASE_ACTIONS))).all()
    for index, leaf in rows:
        bind.execute(events.update().where(events.c.leaf_index == index).values(case_id=json.loads(leaf).get("case")))


def downgrade() -> None:
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.drop_index("ix_custody_events_case_id_leaf_index")
        batch_op.drop_column("case_id")
