"""Page/page_size paging over any select, with the total, the same way for every list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def paginate(session: Session, stmt: Select[Any], *order_by: Any, page: int, page_size: int) -> tuple[list, int]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.order_by(*order_by).limit(page_size).offset((page - 1) * page_size))
    return list(rows), total
