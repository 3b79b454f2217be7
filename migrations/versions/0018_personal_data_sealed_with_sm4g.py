"""personal data sealed with SM4-GCM, with an HMAC-SM3 blind index

Adds `data_keys` (the data keys, each wrapped by the key-encryption key) and the clues' sealed complainant with
its phone's blind index, seals every complainant stored so far, and drops the clear `complainant` column.

The KEK: read as the app reads it, from FIELDCASE_KEK_FILE (default `<FIELDCASE_INSTANCE_DIR>/data-kek.key`),
through `backend.core.secret_files.kek_provider`; only when there are complainants to seal (an empty database
needs no key here: the app makes the data keys on its first write). An operator upgrading a deployment runs, with
the same environment the server runs with:

    fieldcase init-secrets   # on a shared database (PostgreSQL): makes the KEK file; copy it to every host
    fieldcase migrate        # the release step (`fieldcase db upgrade`; on SQLite `fieldcase serve` does it too)

(on SQLite the KEK file is made on first use, as the other keys are). A KEK provider other than the file (a 密码机,
a KMS) is given as `config.attributes["key_provider"]` by whoever runs Alembic in code.

Nothing is left in clear: the UPDATE that writes a sealed value clears the JSON in the same row; on SQLite,
`secure_delete` zeroes what is freed, while this migration runs. On PostgreSQL the rows' old versions stay in the
table's pages until they are vacuumed: run `VACUUM FULL clues;` after the upgrade (docs/deployment.md), and
mind that backups and WAL archives taken before it still hold the clear values.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

import backend.core.models.base

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

data_keys = sa.table(
    "data_keys", sa.column("id", sa.Integer), sa.column("purpose", sa.String), sa.column("generation", sa.Integer),
    sa.column("wrapped", sa.LargeBinary), sa.column("kek_id", sa.String), sa.column("check", sa.String),
    sa.column("created_at", backend.core.models.base.UTCDateTime(timezone=True)))
clues = sa.table("clues", sa.column("id", sa.String), sa.column("complainant", sa.JSON),
                 sa.column("complainant_sealed", sa.LargeBinary), sa.column("complainant_phone_index", sa.String))


def _provider():
    given = context.config.attributes.get("key_provider")
    if given is not None:
        return given
    from backend.core.config import Settings
    from backend.core.secret_files import kek_provider

    return kek_provider(Settings.from_env())


def _make_key(conn, provider, purpose: str, now: datetime) -> tuple[int, bytes]:
    from backend.core.crypto.data_keys import new_data_key

    made = new_data_key(provider)
    key_id = conn.execute(data_keys.insert().values(
        purpose=purpose, generation=1, wrapped=made.wrapped, kek_id=made.kek_id, check=made.check, created_at=now)
        .returning(data_keys.c.id)).scalar_one()
    return key_id, made.key


def _secure_delete(conn, on: bool) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")


def upgrade() -> None:
    from backend.casework.clues import COMPLAINANT, COMPLAINANT_PHONE, complainant_phone, complainant_text
    from backend.core.crypto.sealed_fields import index_value, seal_value

    conn = op.get_bind()  # on PostgreSQL, migrations/env.py has set this transaction's lock_timeout
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("check", sa.String(length=32), nullable=False),
        sa.Column("created_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", backend.core.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        sa.UniqueConstraint("purpose", "generation", name=op.f("uq_data_keys_purpose_generation")),
    )
    with op.batch_alter_table("clues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("complainant_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("complainant_phone_index", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_clues_complainant_phone_index"), ["complainant_phone_index"],
                              unique=False)

    _secure_delete(conn, True)
    # JSON null was stored for "no complainant" (and the column drops with it): only an object is sealed.
    stored = [(row.id, row.complainant) for row in conn.execute(
        sa.select(clues.c.id, clues.c.complainant).where(clues.c.complainant.is_not(None)))]
    to_seal = [(clue_id, value) for clue_id, value in stored if isinstance(value, dict) and value]
    if to_seal:
        provider = _provider()
        now = datetime.now(UTC)
        seal_id, seal_key = _make_key(conn, provider, "seal", now)
        _, index_key = _make_key(conn, provider, "index", now)
        for clue_id, complainant in to_seal:
            conn.execute(clues.update().where(clues.c.id == clue_id).values(
                complainant=sa.null(),
                complainant_sealed=seal_value(seal_id, seal_key, COMPLAINANT, clue_id, complainant_text(complainant)),
                complainant_phone_index=index_value(index_key, COMPLAINANT_PHONE, complainant_phone(complainant))))
    with op.batch_alter_table("clues", schema=None) as batch_op:
        batch_op.drop_column("complainant")
    _secure_delete(conn, False)


def downgrade() -> None:
    """The complainants opened back into clear JSON (needs the KEK, as the upgrade does)."""
    from backend.casework.clues import COMPLAINANT
    from backend.core.crypto.sealed_fields import open_value, sealed_key_id

    conn = op.get_bind()
    with op.batch_alter_table("clues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("complainant", sa.JSON(), nullable=True))
    sealed = list(conn.execute(sa.select(clues.c.id, clues.c.complainant_sealed)
                               .where(clues.c.complainant_sealed.is_not(None))))
    if sealed:
        provider = _provider()
        keys: dict[int, bytes] = {}
        for row in conn.execute(sa.select(data_keys.c.id, data_keys.c.wrapped, data_keys.c.kek_id)):
            keys[row.id] = provider.unwrap(row.wrapped, row.kek_id)
        for clue_id, value in sealed:
            text = open_value(keys[sealed_key_id(value)], COMPLAINANT, clue_id, value)
            conn.execute(clues.update().where(clues.c.id == clue_id).values(complainant=json.loads(text)))
    with op.batch_alter_table("clues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clues_complainant_phone_index"))
        batch_op.drop_column("complainant_phone_index")
        batch_op.drop_column("complainant_sealed")
    op.drop_table("data_keys")
