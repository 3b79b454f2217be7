"""SM3 beside SHA-256 for evidence

An evidence declaration may carry `sm3`, `sha256` or both (issue 23, item 3; docs/protocol.md "Evidence upload, as
built"): `evidence.sha256` may now be NULL (a declaration of SM3 only, until its bytes are verified), and
`evidence.sm3` and `uploads.received_sm3` keep the SM3 digests. Items verified before keep `sm3` NULL: their bytes
were hashed with SHA-256 alone.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:00:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = re.compile(r"(\bsha256 VARCHAR\(64\)) NOT NULL\b")
_NULL = re.compile(r"(\bsha256 VARCHAR\(64\))(?= *[,\n)])")


def _sqlite_sha256(nullable: bool) -> None:
    """SQLite changes a column's NOT NULL only by building the table anew. `uploads` and `custody_holders` refer to
    `evidence`, and with foreign keys on (they always are here) Alembic's batch copy fails: dropping the old table
    orphans their rows, and rows copied into a table of another name do not adopt them again. So: the rows are put
    aside, the table is made again from its own CREATE statement with only that one constraint changed, and the rows
    are inserted back into it, which adopts the orphans before the (deferred) check at commit; then its indexes."""
    bind = op.get_bind()
    op.execute("PRAGMA defer_foreign_keys = ON")
    table_sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'evidence'"
                                     ).scalar_one()
    index_sql = list(bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = "
                                          "'evidence' AND sql IS NOT NULL").scalars())
    pattern = _NULL if not nullable else _NOT_NULL
    changed, count = pattern.subn(r"\1" if nullable else r"\1 NOT NULL", table_sql)
    if count != 1:
        raise RuntimeError(f"evidence.sha256 is not declared as expected: {table_sql!r}")
    op.execute("CREATE TABLE _evidence_0016 AS SELECT * FROM evidence")
    op.execute("DROP TABLE evidence")
    op.execute(changed)  # the same columns in the same order: the copy's rows go back as they are
    op.execute("INSERT INTO evidence SELECT * FROM _evidence_0016")
    op.execute("DROP TABLE _evidence_0016")
    for sql in index_sql:
        op.execute(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("evidence", "sha256", existing_type=sa.String(length=64), nullable=True)
    else:
        _sqlite_sha256(nullable=True)
    op.add_column("evidence", sa.Column("sm3", sa.String(length=64), nullable=True))
    op.add_column("uploads", sa.Column("received_sm3", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # An item declared with SM3 only and never verified has no SHA-256: the downgrade refuses (NOT NULL) while one
    # exists, rather than invent one.
    op.drop_column("uploads", "received_sm3")
    op.drop_column("evidence", "sm3")  # SQLite 3.35 and later drop a plain column in place
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("evidence", "sha256", existing_type=sa.String(length=64), nullable=False)
    else:
        _sqlite_sha256(nullable=False)
