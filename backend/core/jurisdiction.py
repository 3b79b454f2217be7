"""Who may see what: the one scoping rule every list and get goes through.

A city-level officer sees the whole city; a district officer sees their own
district. Anything outside answers exactly like something that does not
exist, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backend.core.errors import NotFound
from backend.core.models import Officer
from backend.core.reference import is_city_level

T = TypeVar("T")


def regions_of(officer: Officer) -> frozenset[str] | None:
    """The region codes the officer may see; None means all of them."""
    if is_city_level(officer.region_code):
        return None
    return frozenset({officer.region_code})


def may_see_region(officer: Officer, region_code: str) -> bool:
    regions = regions_of(officer)
    return regions is None or region_code in regions


def scope(stmt: Select[Any], region_column: ColumnElement[Any], officer: Officer) -> Select[Any]:
    regions = regions_of(officer)
    if regions is None:
        return stmt
    return stmt.where(region_column.in_(sorted(regions)))


def get_scoped(session: Session, model: type[T], ident: str, officer: Officer, *,
               region_column: ColumnElement[Any] | None = None, what: str | None = None) -> T:
    """Fetch one row by primary key within the officer's jurisdiction, or raise NotFound."""
    column = region_column if region_column is not None else model.region_code  # type: ignore[attr-defined]
    pk = model.__mapper__.primary_key[0]  # type: ignore[attr-defined]
    row = session.scalars(scope(select(model).where(pk == ident), column, officer)).first()
    if row is None:
        raise NotFound(f"no {what or model.__name__.lower()} {ident!r}")
    return row
