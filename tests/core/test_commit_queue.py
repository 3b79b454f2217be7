"""Work queued for commit follows the transaction: savepoints included."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.core import commit_queue
from backend.core.models import Change, Institution, new_id
from sync import feed

WRITTEN: list[list[str]] = []


@commit_queue.on_commit
def _record(session, _services) -> None:
    items = commit_queue.take(session, "test.queue")
    if items:
        WRITTEN.append(items)


@pytest.fixture(autouse=True)
def _clear():
    WRITTEN.clear()


def test_a_rolled_back_savepoint_drops_only_what_was_queued_inside_it(db):
    with db.session() as s:
        commit_queue.enqueue(s, "test.queue", "before")
        try:
            with s.begin_nested():
                commit_queue.enqueue(s, "test.queue", "inside")
                raise RuntimeError("this savepoint fails")
        except RuntimeError:
            pass
        with s.begin_nested():
            commit_queue.enqueue(s, "test.queue", "kept")
        assert WRITTEN == []  # a savepoint's release is not the commit
        commit_queue.enqueue(s, "test.queue", "after")
        s.commit()
    assert WRITTEN == [["before", "kept", "after"]]


def test_a_rolled_back_transaction_writes_nothing(db):
    with db.session() as s:
        s.scalar(select(func.count()).select_from(Change))
        commit_queue.enqueue(s, "test.queue", "lost")
        s.rollback()
        s.commit()
    assert WRITTEN == []


def test_a_feed_change_made_inside_a_failed_savepoint_is_not_published(db):
    with db.session() as s:
        kept = Institution(id=new_id("ins"), name="留下", name_norm="留下", region_code="330106")
        s.add(kept)
        s.flush()
        feed.emit(s, "institution", kept)
        try:
            with s.begin_nested():
                gone = Institution(id=new_id("ins"), name="撤销", name_norm="撤销", region_code="330106")
                s.add(gone)
                s.flush()
                feed.emit(s, "institution", gone)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        s.commit()
        assert s.scalar(select(func.count()).select_from(Change)) == 1
        assert s.scalar(select(Change.entity_id)) == kept.id


FOLLOWED: list[tuple[list[str], bool]] = []


@commit_queue.after_commit("test.followed")
def _follow(items, database) -> None:
    with database.transaction() as s:  # a transaction of its own: the one that queued the items is over
        s.scalar(select(func.count()).select_from(Change))
    FOLLOWED.append((items, database.services is not None))


def test_given_a_follower_when_the_transaction_commits_then_it_is_handed_what_was_queued_and_the_database(db):
    FOLLOWED.clear()
    with db.session() as s:
        s.scalar(select(func.count()).select_from(Change))
        commit_queue.enqueue(s, "test.followed", "lost")
        s.rollback()
        commit_queue.enqueue(s, "test.followed", "one")
        with s.begin_nested():
            commit_queue.enqueue(s, "test.followed", "two")
        assert FOLLOWED == []  # a savepoint's release is not the commit
        s.commit()
    assert FOLLOWED == [(["one", "two"], True)]
