"""Bulk rows (COPY on PostgreSQL) store exactly what SQLAlchemy's own insert stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from backend.core.bulk import COPY_FROM_ROWS, insert_rows
from backend.core.models import Change, MerkleNode, QuarantinedRecord

AT = datetime(2026, 11, 25, 8, 30, 15, 123456, tzinfo=UTC)


def _changes(tag: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"kind": "case", "entity_id": f"{tag}-{i}", "op": "upsert", "region_code": "330106" if i % 2 else None,
               "data": {"名称": "星辰教育", "n": i, "nested": {"list": [1, None, "x"]}, "none": None}}
        if i % 3:
            row["officer_id"] = f"off_{i}"
        rows.append(row)
    return rows


def _read(session, tag: str) -> list[tuple]:
    found = session.scalars(select(Change).where(Change.entity_id.like(f"{tag}-%")).order_by(Change.id))
    return [(c.kind, c.entity_id.split("-", 1)[1], c.op, c.region_code, c.officer_id, c.data,
             isinstance(c.created_at, datetime) and c.created_at.tzinfo is not None) for c in found]


def test_rows_written_in_bulk_read_back_as_the_orm_insert_writes_them(db):
    n = COPY_FROM_ROWS * 3
    with db.transaction() as s:
        s.execute(insert(Change), _changes("orm", n))
        insert_rows(s, Change, _changes("bulk", n))
    with db.session() as s:
        orm, bulk = _read(s, "orm"), _read(s, "bulk")
    assert len(bulk) == n and bulk == orm
    assert all(row[-1] for row in bulk)  # the column default (created_at) was applied, as an aware time


def test_ids_follow_the_order_of_the_rows(db):
    with db.transaction() as s:
        insert_rows(s, Change, _changes("order", COPY_FROM_ROWS * 2))
    with db.session() as s:
        names = [c.entity_id for c in s.scalars(select(Change).where(Change.entity_id.like("order-%"))
                                               .order_by(Change.id))]
    assert names == [f"order-{i}" for i in range(COPY_FROM_ROWS * 2)]


def test_bytes_times_and_nulls_survive(db):
    nodes = [{"level": 0, "index": i, "hash": bytes([i]) * 32} for i in range(COPY_FROM_ROWS + 1)]
    quarantined = [{"device_id": None, "officer_id": "off_1", "seq": i if i % 2 else None, "op": None,
                    "hash": f"{i:064x}", "jws": "a.b.c", "code": "malformed", "detail": "ünïcode ✓\ttab\nline",
                    "received_at": AT + timedelta(seconds=i)} for i in range(COPY_FROM_ROWS + 1)]
    with db.transaction() as s:
        insert_rows(s, MerkleNode, nodes)
        insert_rows(s, QuarantinedRecord, quarantined)
    with db.session() as s:
        stored = {n.index: bytes(n.hash) for n in s.scalars(select(MerkleNode).where(MerkleNode.level == 0))}
        rows = list(s.scalars(select(QuarantinedRecord).order_by(QuarantinedRecord.id)))
    assert stored == {n["index"]: n["hash"] for n in nodes}
    assert [(r.seq, r.detail, r.received_at, r.device_id) for r in rows] == [
        (q["seq"], q["detail"], q["received_at"], None) for q in quarantined]


def test_an_unknown_column_is_refused_before_anything_is_written(db):
    rows = [{**row, "colour": "red"} for row in _changes("bad", COPY_FROM_ROWS)]
    with pytest.raises(Exception, match="colour"), db.transaction() as s:
        insert_rows(s, Change, rows)
    with db.session() as s:
        assert _read(s, "bad") == []
