"""Many rows at once: written with COPY on PostgreSQL (executemany elsewhere), looked up by a key array.

A push writes thousands of ledger, projection, feed and custody rows. With
psycopg, `executemany` still sends, binds and executes one statement per row
(pipelined), and on the push path that per-row work cost more CPU than
verifying the signatures. COPY streams the rows through one statement. The
values are prepared exactly as SQLAlchemy would bind them (Python-side
column defaults, then each type's bind processor), so both paths store the
same thing; the tests run on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import any_, bindparam, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Column

COPY_FROM_ROWS = 8  # below this, COPY's extra round trips cost more than they save
_MISSING = object()


def insert_rows(session: Session, model: type, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts keyed by column name) in the session's transaction; no ORM objects are made."""
    if not rows:
        return
    table = model.__table__  # type: ignore[attr-defined]
    given = set().union(*(row.keys() for row in rows))
    unknown = given - set(table.columns.keys())
    if unknown:  # the ORM's insert would drop them silently
        raise KeyError(f"{table.name} has no column(s) {sorted(unknown)}")
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < COPY_FROM_ROWS:
        session.execute(insert(model), list(rows))
        return
    columns = [c for c in table.columns if c.key in given or _python_default(c)]
    dialect = connection.dialect
    prepare = [(c.key, _default_for(c), c.type._cached_bind_processor(dialect), c.type.should_evaluate_none)
               for c in columns]
    names = ", ".join(dialect.identifier_preparer.format_column(c) for c in columns)
    statement = f"COPY {dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN"
    driver = connection.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for row in rows:
            values = []
            for key, default, process, evaluate_none in prepare:
                value = row.get(key, _MISSING)
                if value is _MISSING:  # as executemany: an absent key is SQL NULL or the column default
                    value = default()
                    if value is None:
                        values.append(None)
                        continue
                if process is not None and (value is not None or evaluate_none):
                    value = process(value)
                values.append(value)
            copy.write_row(values)


def _python_default(column: Column[Any]) -> bool:
    default = column.default
    return default is not None and (default.is_scalar or default.is_callable)


def _default_for(column: Column[Any]):
    default = column.default
    if default is None or not (default.is_scalar or default.is_callable):
        return lambda: None
    if default.is_scalar:
        return lambda: default.arg
    return lambda: default.arg(None)  # SQLAlchemy wraps zero-argument callables to take the context


def among(session: Session, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `= ANY(array)`, one statement text whatever the count, so the
    driver parses it once and the server can keep it prepared (an IN of 500 keys is 500 placeholders)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))
