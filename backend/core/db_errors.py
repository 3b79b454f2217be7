"""What may be logged of a database error: its class, SQLSTATE and the names of what it is about; never its text.

The text of a database error quotes row values: PostgreSQL's DETAIL (`Key (cert_number)=(ZF33010600123) already
exists`), its messages (`invalid input syntax for type integer: "…"`), and SQLAlchemy's `[parameters: (…)]` with
every bound value of the statement: officers' names, complainants' phone numbers, password hashes. So an operator
gets what identifies the failure (SQLSTATE 23505, constraint `officers_cert_number_key`) and no value. The log
formatter (`backend.core.logs`) applies this to every database error it is handed.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

# SQLite's constraint messages name the table and column, never the value: kept when they are exactly that.
_SQLITE_CONSTRAINT = re.compile(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(: [\w.]+(, [\w.]+)*)?")


def _dbapi(exc: BaseException) -> BaseException | None:
    """The driver's own exception under SQLAlchemy's wrapper, or the exception itself if it is a driver's."""
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError):
        return exc.orig if isinstance(exc.orig, BaseException) else None
    if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
        return exc
    return None


def is_db_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError) or _dbapi(exc) is not None


def describe(exc: BaseException) -> dict[str, Any]:
    """Loggable fields of a database error: `db_error` (the driver's exception class), `sqlstate`, and the
    `constraint`, `table` and `column` it names (PostgreSQL), or SQLite's error name and constraint message."""
    orig = _dbapi(exc)
    fields: dict[str, Any] = {"db_error": type(orig if orig is not None else exc).__name__}
    if orig is None:
        return fields
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        fields["sqlstate"] = sqlstate
    diag = getattr(orig, "diag", None)
    if diag is not None:
        for key, attr in (("constraint", "constraint_name"), ("table", "table_name"), ("column", "column_name")):
            value = getattr(diag, attr, None)
            if value:
                fields[key] = value
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", None)
        if name:
            fields["sqlite_error"] = name
        if _SQLITE_CONSTRAINT.fullmatch(str(orig)):
            fields["constraint"] = str(orig)
    return fields


def summary(exc: BaseException) -> str:
    """`describe` on one line, for a message: `UniqueViolation sqlstate=23505 constraint=officers_cert_number_key`."""
    fields = describe(exc)
    return " ".join([fields.pop("db_error"), *(f"{k}={v}" for k, v in fields.items())])
