"""Batch look-ups for a push: one query per table for the whole batch instead of one per record.

Applying runs with autoflush off, so every row a record creates is registered
here too; a later record of the same push then finds it without a flush.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.bulk import among, insert_rows

T = TypeVar("T")
CHUNK = 500


def _pk(model: type) -> Any:
    return model.__mapper__.primary_key[0]  # type: ignore[attr-defined]


class Lookup:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[type, dict[Any, Any]] = defaultdict(dict)
        self.missing: dict[type, set[Any]] = defaultdict(set)
        self.memo: dict[tuple, Any] = {}  # answers to look-ups by other keys (institution names, open cases)
        self.rows: dict[type, list[dict[str, Any]]] = defaultdict(list)

    def prefetch(self, model: type, ids: Iterable[Any]) -> None:
        wanted = {i for i in ids if i is not None} - set(self.known[model]) - self.missing[model]
        if not wanted:
            return
        pk, key = _pk(model), _pk(model).key
        ordered = sorted(wanted)
        for start in range(0, len(ordered), CHUNK):
            for row in self.session.scalars(select(model).where(among(self.session, pk, ordered[start:start + CHUNK]))):
                self.known[model][getattr(row, key)] = row
        self.missing[model] |= wanted - set(self.known[model])

    def get(self, model: type[T], ident: Any) -> T | None:
        if ident in self.known[model]:
            return self.known[model][ident]
        if ident in self.missing[model]:
            return None
        obj = self.session.get(model, ident)
        if obj is None:
            self.missing[model].add(ident)
        else:
            self.known[model][ident] = obj
        return obj

    def add_row(self, model: type, row: dict[str, Any]) -> SimpleNamespace:
        """A new row written in bulk with the batch (no ORM object: at push rates the unit of work costs
        more than the insert). Later records of the push see it here; the returned namespace stands in
        for it where an object is read (the change feed's snapshot)."""
        self.rows[model].append(row)
        view = SimpleNamespace(**row)
        self.known[model][row[_pk(model).key]] = view
        self.missing[model].discard(row[_pk(model).key])
        return view

    def write_rows(self) -> None:
        for model, rows in self.rows.items():
            if rows:
                insert_rows(self.session, model, rows)
        self.rows.clear()

    def add(self, obj: Any, *, persist: bool = True) -> None:
        """Register a new row (and add it to the session unless it is already there)."""
        if persist:
            self.session.add(obj)
        model = type(obj)
        ident = getattr(obj, _pk(model).key)
        self.known[model][ident] = obj
        self.missing[model].discard(ident)
