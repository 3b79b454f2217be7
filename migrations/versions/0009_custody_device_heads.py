"""the device a custody leaf witnesses the chain head of (device_head leaves), indexed for packages

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_custody_events_device_id_leaf_index", ["device_id", "leaf_index"], unique=False)
    # device_head leaves written before this column: their device from the leaf itself (the leaf is authoritative)
    events = sa.table("custody_events", sa.column("leaf_index", sa.BigInteger()), sa.column("leaf", sa.Text()),
                      sa.column("action", sa.String()), sa.column("device_id", sa.String()))
    bind = op.get_bind()
    rows = bind.execute(sa.select(events.c.leaf_index, events.c.leaf).where(events.c.action == "device_head")).all()
    for index, leaf in rows:
        bind.execute(events.update().where(events.c.leaf_index == index)
                     .values(device_id=json.loads(leaf).get("device")))


def downgrade() -> None:
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.drop_index("ix_custody_events_device_id_leaf_index")
        batch_op.drop_column("device_id")
