"""Alembic environment: the URL comes from the caller's config or from fieldcase's settings.

On PostgreSQL every migration transaction begins with `SET LOCAL lock_timeout` (here, once, rather than in each
migration). Why: during a rolling upgrade the old release keeps serving while `fieldcase migrate` runs, and
PostgreSQL queues every later statement on a table behind a DDL statement that is itself waiting for a lock (held
by a push's open transaction, a long pull). Without a limit, one ALTER waiting behind one slow transaction stops every
push and pull on that table; with it, the migration gives up after a few seconds, rolls back whole, and is run
again. The limit is backend.core.schema's DEFAULT_LOCK_TIMEOUT, or `fieldcase migrate --lock-timeout`, or
`alembic -x lock_timeout=…`.
"""

from __future__ import annotations

from alembic import context

from backend.core.config import Settings
from backend.core.db import make_engine
from backend.core.models import Base
from backend.core.schema import DEFAULT_LOCK_TIMEOUT, check_lock_timeout, migration_transaction

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def lock_timeout() -> str:
    """The migration transaction's lock_timeout: `-x lock_timeout=…`, else what the caller set in the config's
    attributes (`backend.core.schema.upgrade`), else the default."""
    value = (context.get_x_argument(as_dictionary=True).get("lock_timeout")
             or config.attributes.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT)
    check_lock_timeout(value)
    return value


def _limit_lock_waits(dialect_name: str) -> None:
    if dialect_name == "postgresql":
        context.execute(f"SET LOCAL lock_timeout = '{lock_timeout()}'")


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        _limit_lock_waits(context.get_context().dialect.name)
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn, migration_transaction(conn):
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        _limit_lock_waits(connection.dialect.name)
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
