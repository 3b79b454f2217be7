"""SM2 devices: a device's signature suite

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:00:00.000000

Every device gets `suite` (``intl`` for those enrolled so far: Ed25519 keys, records chained by SHA-256), and
`public_key` widens from 64 to 88 characters: an SM2 key is the 65-byte uncompressed point, 87 characters of
base64url.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = "public_key VARCHAR({}) NOT NULL"


def _sqlite_key_length(old: int, new: int) -> None:
    """SQLite keeps a column's declared length only as text (a VARCHAR(64) holds any length, with TEXT affinity in
    both), so the declaration is rewritten in place, as sqlite.org/lang_altertable.html ("Making other kinds of
    table schema changes") describes for changes that leave the stored rows as they are. Alembic's batch mode
    would copy the table instead and drop the old one, which fails here on the first device with ledger rows:
    the ledger, held records and gaps refer to `devices`, and foreign keys are on (they cannot be turned off
    inside the migration's transaction)."""
    conn = op.get_bind()
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        changed = conn.exec_driver_sql(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'devices' "
            "AND instr(sql, ?) > 0", (_KEY.format(old), _KEY.format(new), _KEY.format(old))).rowcount
        if changed != 1:
            raise RuntimeError(f"devices.public_key is not declared {_KEY.format(old)!r}: not changed")
        conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suite", sa.String(length=8), server_default="intl", nullable=False))
    if dialect == "sqlite":
        _sqlite_key_length(64, 88)
    else:
        # A longer VARCHAR is a change of the catalogue only on PostgreSQL: no row is rewritten, the index stays.
        with op.batch_alter_table("devices", schema=None) as batch_op:
            batch_op.alter_column("public_key", existing_type=sa.String(length=64), type_=sa.String(length=88),
                                  existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().execute(sa.text("SELECT count(*) FROM devices WHERE suite <> 'intl'")).scalar_one():
        raise RuntimeError("SM2 devices are enrolled: the schema before 0015 cannot hold their keys or records")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_key_length(88, 64)
    else:
        with op.batch_alter_table("devices", schema=None) as batch_op:
            batch_op.alter_column("public_key", existing_type=sa.String(length=88), type_=sa.String(length=64),
                                  existing_nullable=False)
    op.drop_column("devices", "suite")  # SQLite 3.35+ drops it in place: no copy of the table
