"""every certificate an officer has held: an evidence list names the one valid at the time

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.core.models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "officer_certificates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("officer_id", sa.String(length=40), nullable=False),
        sa.Column("cert_number", sa.String(length=32), nullable=False),
        sa.Column("cert_valid_from", sa.Date(), nullable=True),
        sa.Column("cert_valid_until", sa.Date(), nullable=True),
        sa.Column("recorded_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"],
                                name=op.f("fk_officer_certificates_officer_id_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer_certificates")),
    )
    with op.batch_alter_table("officer_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_officer_certificates_officer_id"), ["officer_id"], unique=False)
    # The certificates held today are the history's first rows: what was overwritten before is gone.
    op.execute(
        "INSERT INTO officer_certificates (officer_id, cert_number, cert_valid_from, cert_valid_until, recorded_at) "
        "SELECT id, cert_number, cert_valid_from, cert_valid_until, updated_at FROM officers "
        "WHERE cert_number IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("officer_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_certificates_officer_id"))
    op.drop_table("officer_certificates")
