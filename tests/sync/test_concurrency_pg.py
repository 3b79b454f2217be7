"""Concurrency on PostgreSQL (PROTOCOL §4 Merging, §4 duplicates, §5 feed order), with real threads.

SQLite serialises every writer (BEGIN IMMEDIATE), so races only exist on
PostgreSQL; the module is skipped elsewhere. Threads call the domain
functions with a session of their own, or the API through a test client of
their own (the Flask test client is not shared across threads).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, func, select

from backend.casework.apply import RecordApplier
from backend.casework.institutions import create_institution
from backend.core.models import (
    Case,
    CaseAlias,
    Change,
    DeferredRecord,
    Device,
    Institution,
    LedgerRecord,
    Officer,
    QuarantinedRecord,
)
from backend.core.names import normalise_name
from backend.core.times import system_clock
from backend.core.uow import commit_retrying
from sync import feed
from sync.credit_code import check_character
from sync.devices import enrol
from sync.push import push
from tests.phones import SHANGHAI, ZERO, TestPhone

N_PHONES = 8
CREDIT_CODE = "91330100799655058B"
TIMEOUT = 60


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("races need PostgreSQL (set FIELDCASE_TEST_DATABASE_URL); SQLite serialises writers")


class DomainPhone(TestPhone):
    """TestPhone's signing and chaining, enrolled through the domain function (no HTTP, no login)."""

    def __init__(self, db, officer) -> None:
        self.client, self.officer, self.headers = None, officer, {}
        self.key = Ed25519PrivateKey.generate()
        with db.transaction() as session:
            self.device_id = enrol(session, officer, self.public_key, "race phone").id
        self.seq, self.prev = 0, ZERO
        self.clock = datetime(2026, 7, 14, 9, 0, tzinfo=SHANGHAI)


def push_as(db, officer_id: str, records: list[str], before_commit=None) -> dict:
    """One push in a session of its own (what one request does), optionally pausing inside the transaction."""
    with db.session() as session:
        if before_commit is not None:
            # Instance listeners run after the class-level feed hook, i.e. after the change rows are inserted.
            event.listen(session, "before_commit", before_commit)
        return commit_retrying(session, lambda s: push(s, s.get(Officer, officer_id), records,
                                                       applier=RecordApplier(), now=system_clock()))


def all_at_once(jobs):
    """Run the callables in threads released together by a barrier; re-raise the first exception."""
    barrier = threading.Barrier(len(jobs))

    def run(job):
        barrier.wait(timeout=TIMEOUT)
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [f.result(timeout=TIMEOUT) for f in futures]


def valid_credit_code(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    first17 = "91330106" + "".join(rng.choice(alphabet) for _ in range(9))
    return first17 + check_character(first17)


# --- (a) N phones open a case for the same institution at the same moment -------------------------------

@pytest.mark.parametrize("same", ["name", "credit_code", "registered"])
def test_racing_case_opens_for_one_institution_give_one_case(db, officers, same):
    """`name`/`credit_code`: the institution is unknown, so the phones race to create it (and the losers then
    find the winner's case); `registered`: it is in the registry, so the phones race on the case itself."""
    staff = [officers.make(region="330106", department="education") for _ in range(N_PHONES)]
    phones = [DomainPhone(db, o) for o in staff]
    rng = random.Random(7)
    for round_ in range(4):
        if same == "registered":
            with db.transaction() as s:
                registered = create_institution(s, s.get(Officer, staff[0].id), {
                    "name": f"已登记培训中心{round_}", "region": "330106", "credit_code": valid_credit_code(rng)})
            refs_by = [{"id": registered.id}, {"name": registered.name, "region": "330106"},
                       {"credit_code": registered.credit_code, "name": "别名", "region": "330106"}]
            institutions = [refs_by[i % 3] for i in range(N_PHONES)]
        elif same == "name":
            # Spellings that normalise alike: half-width and full-width brackets, stray spaces.
            spellings = [f"星火培训中心({round_})", f"星火 培训中心（{round_}）", f" 星火培训中心 ({round_})"]
            institutions = [{"name": spellings[i % 3], "region": "330106"} for i in range(N_PHONES)]
        else:
            code = CREDIT_CODE if round_ == 0 else valid_credit_code(rng)
            # Different names each: only the credit code says it is one institution.
            institutions = [{"credit_code": code, "name": f"机构{round_}-{i}", "region": "330106"}
                            for i in range(N_PHONES)]
        opened = [p.open_case(inst) for p, inst in zip(phones, institutions, strict=True)]
        answers = all_at_once([(lambda p=p, jws=jws: push_as(db, p.officer.id, [jws]))
                               for p, (_cid, jws) in zip(phones, opened, strict=True)])

        results = [a["results"] for a in answers]
        assert all(len(r) == 1 and r[0]["status"] == "applied" and "code" not in r[0] for r in results), [
            (r[0]["status"], r[0].get("code"), r[0].get("detail")) for r in results]
        refs = [r[0]["refs"] for r in results]
        assert len({r["case_id"] for r in refs}) == 1, refs
        assert len({r["institution_id"] for r in refs}) == 1, refs
        assert sum(1 for r in refs if r.get("merged")) == N_PHONES - 1, refs
        case_id, inst_id = refs[0]["case_id"], refs[0]["institution_id"]

        with db.session() as s:
            if same == "registered":
                found = s.scalars(select(Institution).where(Institution.id == registered.id)).all()
            elif same == "name":
                found = s.scalars(select(Institution).where(Institution.region_code == "330106",
                                                            Institution.name_norm == f"星火培训中心{round_}")).all()
            else:
                found = s.scalars(select(Institution).where(Institution.credit_code == code)).all()
            assert [i.id for i in found] == [inst_id]
            assert s.scalars(select(Case.id).where(Case.institution_id == inst_id)).all() == [case_id]
            aliases = s.scalars(select(CaseAlias).where(CaseAlias.case_id == case_id)).all()
            assert sorted(a.client_case_id for a in aliases) == sorted(cid for cid, _ in opened)
            assert sum(a.merged for a in aliases) == N_PHONES - 1
            kinds = Counter(s.execute(select(Change.kind).where(Change.entity_id.in_(
                [case_id, inst_id] + [cid for cid, _ in opened])).order_by(Change.id)).scalars())
            assert kinds == {"institution": 1, "case": 1, "case_alias": N_PHONES}  # registered: its create
        heads = {p.device_id: a["heads"][p.device_id]["seq"] for p, a in zip(phones, answers, strict=True)}
        assert set(heads.values()) == {round_ + 1}


@pytest.mark.parametrize("created", ["institutions", "first_cases"])
def test_pushes_creating_the_same_things_in_opposite_orders_queue_instead_of_deadlocking(db, officers, created):
    """Offline backlogs name the same new centres in different orders. Given two phones whose batches each open
    cases for X and Y, X first on one phone and Y first on the other, with work in between, when both push at
    once, allowed a single attempt each (no server-side retry to hide a deadlock), then both are applied and
    each centre has one case: the second push waited for the first on the keys it was about to create."""
    staff = [officers.make(region="330106", department="education") for _ in range(2)]
    phones = [DomainPhone(db, o) for o in staff]
    for round_ in range(4):
        names = [f"交叉培训中心{round_}-{k}" for k in "XY"]
        if created == "first_cases":
            with db.transaction() as s:
                for name in names:
                    create_institution(s, s.get(Officer, staff[0].id), {"name": name, "region": "330106"})
        batches = []
        for phone, order in zip(phones, (names, names[::-1]), strict=True):
            cid, first = phone.open_case({"name": order[0], "region": "330106"})
            iid, started = phone.start(cid, [o.id for o in staff])
            work = [phone.finding(iid) for _ in range(150)]
            batches.append([first, started, *work, phone.open_case({"name": order[1], "region": "330106"})[1]])

        def send(phone, batch):
            with db.session() as session:
                return commit_retrying(session, lambda s: push(s, s.get(Officer, phone.officer.id), batch,
                                                               applier=RecordApplier(), now=system_clock()),
                                       attempts=1)

        answers = all_at_once([lambda p=p, b=b: send(p, b) for p, b in zip(phones, batches, strict=True)])
        for answer in answers:
            assert {r["status"] for r in answer["results"]} == {"applied"}, answer["results"][:3]
        opens = [a["results"][i]["refs"] for a in answers for i in (0, -1)]
        assert len({r["case_id"] for r in opens}) == 2 and len({r["institution_id"] for r in opens}) == 2, opens
        assert sum(1 for r in opens if r.get("merged")) == 2, opens
        with db.session() as s:
            for name in names:
                insts = s.scalars(select(Institution.id).where(Institution.name_norm == normalise_name(name))).all()
                assert len(insts) == 1, (name, insts)
                assert len(s.scalars(select(Case.id).where(Case.institution_id == insts[0])).all()) == 1


def test_a_burst_of_wrong_passwords_gets_no_more_password_checks_than_the_throttle_allows(app, officers, settings):
    """Given an officer, when 16 guesses at their password arrive from one address at the same moment, then at
    most the free failures of them reach the (slow) password check and are answered 401; the rest are refused
    429 before it. Each attempt is counted before its password is checked, so the guesses cannot all pass the
    throttle together (before, all 16 were checked)."""
    zhang = officers.make(region="330106", department="education")
    limit = settings.login_free_failures

    def guess(i: int):
        r = app.test_client().post("/api/v1/auth/token", json={"username": zhang.username,
                                                               "password": f"guess-{i}"},
                                   environ_base={"REMOTE_ADDR": "10.9.0.1"})
        return r.status_code

    statuses = Counter(all_at_once([lambda i=i: guess(i) for i in range(16)]))
    # Refusing more is safe: attempts that all count one another before any is checked may all be refused.
    assert set(statuses) <= {401, 429} and statuses[401] <= limit, statuses
    r = app.test_client().post("/api/v1/auth/token", json={"username": zhang.username, "password": "again"},
                               environ_base={"REMOTE_ADDR": "10.9.0.1"})
    assert r.status_code == (429 if statuses[401] == limit else 401)


# --- (b) one device's batch pushed twice at once -----------------------------------------------------------

@pytest.mark.parametrize("transport", ["http", "domain"])
def test_the_same_batch_pushed_twice_at_once_is_ledgered_once(app, db, officers, transport):
    zhang = officers.make(region="330106", department="education")
    li = officers.make(region="330106", department="education")
    phone = DomainPhone(db, zhang)
    headers = officers.headers(zhang)

    def send(batch):
        if transport == "domain":
            return push_as(db, zhang.id, batch)
        r = app.test_client().post("/api/v1/sync/push", json={"records": batch}, headers=headers)
        assert r.status_code == 200, (r.status_code, r.get_data(as_text=True))
        return r.json

    sent: list[str] = []
    for round_ in range(6):
        cid, opened = phone.open_case({"name": f"同批次培训{round_ % 2}", "region": "330106"})
        iid, started = phone.start(cid, [zhang.id, li.id])
        batch = [opened, started, phone.finding(iid), phone.evidence(iid)[1], phone.end(iid)]
        if round_ % 3 == 2:
            batch.reverse()  # handled in seq order whatever the list order
        sent += batch
        answers = all_at_once([lambda b=batch: send(b), lambda b=batch: send(b)])
        for i in range(len(batch)):
            statuses = sorted(a["results"][i]["status"] for a in answers)
            assert statuses == ["applied", "duplicate"], [a["results"] for a in answers]
        for a in answers:
            assert a["heads"][phone.device_id]["seq"] == phone.seq

    with db.session() as s:
        ledger = s.execute(select(LedgerRecord.op, LedgerRecord.seq).where(
            LedgerRecord.device_id == phone.device_id).order_by(LedgerRecord.seq)).all()
        assert [seq for _op, seq in ledger] == list(range(1, len(sent) + 1))
        assert len({op for op, _seq in ledger}) == len(sent)
        assert s.scalar(select(func.count()).select_from(QuarantinedRecord)) == 0
        assert s.scalar(select(func.count()).select_from(DeferredRecord)) == 0
        assert s.get(Device, phone.device_id).head_seq == len(sent)


# --- (c) the feed: a reader paging while writers commit never skips or repeats a change --------------------

def nap(max_seconds: float):
    def sleep_inside_transaction(_session):
        time.sleep(random.uniform(0, max_seconds))
    return sleep_inside_transaction


def run_feed_race(db, officers, *, writers: int = 4, commits: int = 50, nap_s: float = 0.004):
    """Writers commit changes (pushed case.opens, registry creates) while a city-level reader pages the feed.

    Every writer sleeps inside its transaction after its change rows are inserted and before COMMIT: the
    window in which a later id could become visible before an earlier one. Returns (seen, pages_while_writing,
    changes in the table), `seen` being (kind, entity id, page position) in the order the reader got them.
    """
    reader = officers.make(region="330100", department="education")
    staff = [officers.make(region="330106", department="education") for _ in range(writers)]
    phones = {o.id: DomainPhone(db, o) for o in staff[: (writers + 1) // 2]}
    writing = threading.Event()
    writing.set()

    def push_writer(index: int, officer) -> None:
        phone = phones[officer.id]
        for k in range(commits):
            _cid, jws = phone.open_case({"name": f"feed-{index}-{k}", "region": "330106"})
            answer = push_as(db, officer.id, [jws], before_commit=nap(nap_s))
            assert answer["results"][0]["status"] == "applied", answer

    def registry_writer(index: int, officer) -> None:
        for k in range(commits):
            with db.session() as session:
                event.listen(session, "before_commit", nap(nap_s))
                actor = session.get(Officer, officer.id)
                for j in range(1 + k % 2):
                    create_institution(session, actor, {"name": f"registry-{index}-{k}-{j}", "region": "330106"})
                session.flush()
                time.sleep(random.uniform(0, nap_s))
                session.commit()

    def read() -> tuple[list[tuple[str, str, int]], int]:
        seen: list[tuple[str, str, int]] = []
        cursor, pages_while_writing = None, 0
        rng = random.Random(11)
        while True:
            still_writing = writing.is_set()
            with db.session() as session:
                page = feed.pull(session, session.get(Officer, reader.id), cursor, rng.randint(1, 25))
            cursor = page["cursor"]
            position = feed.decode_cursor(cursor)
            seen += [(c["kind"], c["id"], position) for c in page["changes"]]
            pages_while_writing += still_writing
            if not still_writing and not page["has_more"]:
                return seen, pages_while_writing

    jobs = [(lambda i=i, o=o: (push_writer if o.id in phones else registry_writer)(i, o))
            for i, o in enumerate(staff)]
    with ThreadPoolExecutor(max_workers=writers + 1) as pool:
        reading = pool.submit(read)
        futures = [pool.submit(job) for job in jobs]
        try:
            for f in futures:
                f.result(timeout=10 * TIMEOUT)
        finally:
            writing.clear()
        seen, pages_while_writing = reading.result(timeout=TIMEOUT)
    with db.session() as s:
        table = s.execute(select(Change.id, Change.kind, Change.entity_id).order_by(Change.id)).all()
    return seen, pages_while_writing, table


def check_feed(seen, table) -> list[int]:
    """Map what the reader saw to change ids; return the ids it missed (asserting no repeat, no disorder)."""
    ids = {(kind, entity): id_ for id_, kind, entity in table}
    assert len(ids) == len(table), "each change in this test is a distinct entity, so (kind, id) names it"
    seen_ids = [ids[(kind, entity)] for kind, entity, _position in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a change was delivered twice"
    assert seen_ids == sorted(seen_ids), "changes were delivered out of server order"
    for (_kind, _entity, position), id_ in zip(seen, seen_ids, strict=True):
        assert id_ <= position  # the cursor never stays behind what the page carried
    return sorted(set(ids.values()) - set(seen_ids))


def test_a_reader_paging_during_concurrent_commits_sees_every_change_once_in_order(db, officers):
    seen, pages_while_writing, table = run_feed_race(db, officers)
    assert len(table) == 2 * 50 * 3 + 2 * (25 * 1 + 25 * 2)  # a push: institution+case+alias; registry: 1 or 2
    assert pages_while_writing >= 20, "the reader should page while the writers are still committing"
    missed = check_feed(seen, table)
    assert missed == []
    assert [id_ for id_, _kind, _entity in table] == sorted(id_ for id_, _k, _e in table)


@pytest.fixture
def feed_without_lock(monkeypatch):
    """The feed hook minus its advisory lock (for the test that shows what the lock is for)."""
    monkeypatch.setattr(feed, "_sequence_lock", lambda session: None)


def interleave_two_commits(db, officers) -> dict:
    """A inserts its change row then stalls before COMMIT; B then commits; the reader pages; A commits.

    Deterministic: the hazard is forced rather than hoped for. Returns what happened.
    """
    actor = officers.make(region="330106", department="education")
    reader = officers.make(region="330100", department="education")
    a_inserted, release_a = threading.Event(), threading.Event()

    def stall(_session):
        a_inserted.set()
        assert release_a.wait(TIMEOUT)

    def create(name: str, before_commit=None) -> None:
        with db.session() as session:
            if before_commit is not None:
                event.listen(session, "before_commit", before_commit)
            create_institution(session, session.get(Officer, actor.id), {"name": name, "region": "330106"})
            session.commit()

    def drain(cursor):
        out = []
        while True:
            with db.session() as session:
                page = feed.pull(session, session.get(Officer, reader.id), cursor, 10)
            out += [c["data"]["name"] for c in page["changes"]]
            cursor = page["cursor"]
            if not page["has_more"]:
                return out, cursor

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(create, "A-slow", stall)
        assert a_inserted.wait(TIMEOUT)
        b = pool.submit(create, "B-fast")
        time.sleep(0.5)
        b_committed_while_a_open = b.done()
        first, cursor = drain(None)
        release_a.set()
        a.result(timeout=TIMEOUT)
        b.result(timeout=TIMEOUT)
    second, _ = drain(cursor)
    with db.session() as s:
        in_id_order = s.scalars(select(Change.data).order_by(Change.id)).all()
    return {"b_committed_while_a_open": b_committed_while_a_open, "seen": first + second,
            "table": [d["name"] for d in in_id_order]}


def test_with_the_feed_lock_a_later_commit_waits_so_nothing_is_skipped(db, officers):
    happened = interleave_two_commits(db, officers)
    assert happened["table"] == ["A-slow", "B-fast"]
    assert not happened["b_committed_while_a_open"]
    assert happened["seen"] == ["A-slow", "B-fast"]


def test_without_the_feed_lock_the_skip_hazard_is_real(db, officers, feed_without_lock):
    """Proves the lock is load-bearing: the same interleaving, the lock removed, loses A's change."""
    happened = interleave_two_commits(db, officers)
    assert happened["table"] == ["A-slow", "B-fast"]  # A got the lower id ...
    assert happened["b_committed_while_a_open"]  # ... B committed first ...
    assert happened["seen"] == ["B-fast"]  # ... and the reader, past B's id, never sees A
