"""Engine and session factory; the only place that knows which database we run on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.core import commit_queue
from backend.core.uow import NO_SERVICES, Services

POOL_OPTIONS = ("pool_size", "max_overflow", "pool_timeout")


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for `url`. `pool_size`, `max_overflow` and `pool_timeout` (seconds to wait for a free
    connection before `sqlalchemy.exc.TimeoutError`, which the API answers with `503`) size the pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:  # an in-memory database lives in one connection per thread: no queue to size
            kwargs = {k: v for k, v in kwargs.items() if k not in POOL_OPTIONS}
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT;
    # we issue BEGIN ourselves (IMMEDIATE, so writers queue instead of failing).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine_or_session: Engine | Session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "sqlite"


class Database:
    """One engine and its sessions, the unit of work (backend.core.uow) of the app, a script, a worker or a test.

    `services` are what its commits' writers use (the custody signer, the job runner): given here by the
    composition root, once, for every session this database makes. What must follow a commit without holding
    its locks (`commit_queue.after_commit`) is given this database, to open transactions of its own.
    """

    def __init__(self, url: str, *, services: Services = NO_SERVICES, **engine_kwargs) -> None:
        self.url = url
        self.services = services
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.sessionmaker, "before_commit", partial(commit_queue.run_writers, services=services))
        event.listen(self.sessionmaker, "after_commit", partial(commit_queue.run_followers, database=self))

    def session(self) -> Session:
        return self.sessionmaker()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A short unit of work: commit on success, roll back on any error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
