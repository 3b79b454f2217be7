"""Batch look-ups for a push: one query per table for the whole batch instead of one per record.

Applying runs with autoflush off, so every row a record creates is registered
here too; a later record of the same push then finds it without a flush.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import literal, select, union_all
from sqlalchemy.orm import Session

from backend.core.bulk import among, insert_rows

T = TypeVar("T")
CHUNK = 500


def _pk(model: type) -> Any:
    return model.__mapper__.primary_key[0]  # type: ignore[attr-defined]


class Lookup:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[type, dict[Any, Any]] = defaultdict(dict)
        self.missing: dict[type, set[Any]] = defaultdict(set)
        self.present: dict[type, set[Any]] = defaultdict(set)  # known to exist, row not loaded (prefetch_ids)
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

    def prefetch_ids(self, wanted: dict[type, Iterable[Any]]) -> None:
        """Which of these keys exist, for tables where a record only needs to know that (its id is taken,
        its category is in the catalogue): one statement for all of them, no rows loaded."""
        parts = []
        for model, ids in wanted.items():
            todo = sorted({i for i in ids if i is not None} - set(self.known[model]) - self.present[model]
                          - self.missing[model])
            if todo:
                pk = _pk(model)
                parts.append((model, todo, select(literal(model.__name__).label("m"), pk.label("k"))
                              .where(among(self.session, pk, todo))))
        if not parts:
            return
        by_name = {model.__name__: model for model, _ids, _q in parts}
        statement = parts[0][2] if len(parts) == 1 else union_all(*(q for _m, _i, q in parts))
        for name, key in self.session.execute(statement):
            self.present[by_name[name]].add(key)
        for model, todo, _q in parts:
            self.missing[model] |= set(todo) - self.present[model]

    def exists(self, model: type, ident: Any) -> bool:
        if ident in self.known[model] or ident in self.present[model]:
            return True
        if ident in self.missing[model]:
            return False
        found = self.session.scalar(select(_pk(model)).where(_pk(model) == ident)) is not None
        (self.present if found else self.missing)[model].add(ident)
        return found

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

    def update_row(self, model: type, ident: Any, changes: dict[str, Any]) -> bool:
        """Change a row of this push that is still waiting for its bulk insert (a later record corrected it);
        False when there is none, and the row, if any, is in the database or the session."""
        key = _pk(model).key
        for row in self.rows[model]:
            if row[key] == ident:
                row.update(changes)
                view = self.known[model].get(ident)
                if view is not None:
                    for name, value in changes.items():
                        setattr(view, name, value)
                return True
        return False

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
