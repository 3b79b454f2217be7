"""Evidence retention: expired, unlinked files are deleted by a custodian under custody; everything else stays.

Real phones sign real records, real files go up by the plan (local store and
S3 on moto), real cases move through the procedure. A purge is judged at a
`now` past the retention period, or, through the API and the command line,
on items whose capture and arrival were set back in the database.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from backend.bootstrap import create_app
from backend.cli import main
from backend.core.errors import Gone
from backend.core.models import Evidence, LedgerRecord, Officer, Upload, utcnow
from backend.core.uow import commit_each
from media import retention
from media.package_verify import verify_package
from media.store import StoreError
from media.uploads import verify_upload
from tests import images
from tests.conftest import PASSWORD, Officers
from tests.media.test_package import rewrite
from tests.media.test_uploads import Field
from tests.phones import uid

REASON = "保存期满，依规删除"
CENTRE = {"name": "晨光学科培训工作室", "region": "330106"}
LATER = timedelta(days=400)  # past the default 183 days


def purge(s, store, custodian: Officer, *, judged_at, days: int = 183, **kw: Any) -> retention.PurgeReport:
    """A purge as the API and the command run it: planned at `judged_at`, then each item deleted (stamped with the
    real time) in a transaction of its own."""
    report = retention.plan_purge(s, custodian, REASON, days, now=judged_at, **kw)
    s.commit()
    items = commit_each(s, report.pending,
                        lambda s, eid: retention.purge_item(s, store, custodian, report, eid, now=utcnow()),
                        retention.purge_failed, retention.PURGE_ERRORS)
    return retention.finish_purge(s, custodian, report, items)


class Scene:
    """One officer's phone and a custodian of the same district, on the app under test."""

    def __init__(self, app) -> None:
        st = app.extensions["fieldcase"]
        self.app, self.db, self.store, self.settings = app, st.db, st.store, st.settings
        self.field = Field(app, lambda _app, client: Officers(st.db, client))
        self.client, self.phone, self.headers = self.field.client, self.field.phone, self.field.headers
        self.officers = Officers(st.db, self.client)
        self.custodian = self.officers.make(roles=("officer", "custodian"))
        self.hc = self.officers.headers(self.custodian)

    # -- the field
    def case(self) -> tuple[str, str]:
        """A case of a centre of its own: a second case.open for one centre would merge into the open case."""
        cid, record = self.phone.open_case({**CENTRE, "name": f"{CENTRE['name']}{uid()[:8]}"})
        result = self.phone.push([record])["results"][0]
        return cid, result["refs"]["case_id"]

    def inspection(self, cid: str) -> str:
        iid, record = self.phone.start(cid, [self.phone.officer.id])
        assert self.phone.push([record])["results"][0]["status"] == "applied"
        return iid

    def cite(self, iid: str, *evidence_ids: str) -> None:
        record = self.phone.record("inspection.finding", {"inspection_id": iid, "finding_id": uid(),
                                                          "category": "unlicensed", "description": "无证办学",
                                                          "evidence": list(evidence_ids)})
        assert self.phone.push([record])["results"][0]["status"] == "applied"

    def stored(self, data: bytes | None = None, **extra: Any) -> str:
        data = data if data is not None else os.urandom(4000)
        eid = self.field.declare(data, **extra)
        assert self.field.upload(eid, data)["status"] == "verified"
        return eid

    def move(self, case_id: str, *steps: str, **body: Any) -> None:
        for to in steps:
            r = self.client.post(f"/api/v1/cases/{case_id}/transitions", headers=self.headers,
                                 json={"to": to, "reason": f"→ {to}", **(body if to == steps[-1] else {})})
            assert r.status_code == 201, r.json

    # -- the server
    def purge(self, *, after: timedelta = LATER, days: int = 183, who: Officer | None = None, **kw: Any):
        with self.db.session() as s:
            custodian = s.get(Officer, (who or self.custodian).id)
            return purge(s, self.store, custodian, judged_at=utcnow() + after, days=days, **kw)

    def row(self, eid: str) -> Evidence:
        with self.db.session() as s:
            return s.get(Evidence, eid)

    def age(self, *eids: str, days: int = 200) -> None:
        """Captured and received `days` ago: what the API and the command line judge at the real time."""
        then = utcnow() - timedelta(days=days)
        with self.db.transaction() as s:
            s.execute(update(Evidence).where(Evidence.id.in_(eids)).values(captured_at=then, declared_at=then))

    def has(self, key: str) -> bool:
        try:
            self.store.open(key).close()
            return True
        except StoreError:
            return False

    def events(self, eid: str) -> list[dict[str, Any]]:
        return self.client.get(f"/api/v1/evidence/{eid}/custody", headers=self.hc).json["events"]


@pytest.fixture
def scene(media_app) -> Scene:
    return Scene(media_app)


@pytest.fixture
def local(app) -> Scene:
    """The API and the command line: the local store is enough, the rules are the same."""
    return Scene(app)


def env(settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}


def custody_verifies(settings) -> None:
    result = CliRunner().invoke(main, ["custody", "verify"], env=env(settings))
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(": OK")


# --------------------------------------------------------------------------- deleting


def test_given_an_expired_unlinked_photo_when_a_custodian_purges_then_its_files_are_gone_and_its_record_stays(scene):
    data = images.jpeg_with_exif((400, 300))
    eid = scene.field.declare(data, kind="photo", media_type="image/jpeg")
    assert scene.field.upload(eid, data[:-1] + b"\x00")["status"] == "mismatch"  # a damaged first attempt
    answer = scene.field.upload(eid, data)
    assert answer["status"] == "verified" and answer["has_thumbnail"] is True
    before = scene.row(eid)
    with scene.db.session() as s:
        (mismatch_key,) = s.scalars(select(Upload.mismatch_key).where(Upload.mismatch_key.is_not(None),
                                                                      Upload.evidence_id == eid))
    files = [mismatch_key, before.thumbnail_key, before.object_key]
    assert all(scene.has(k) for k in files)

    report = scene.purge()

    (item,) = report.items
    assert (item.evidence_id, item.result, item.sha256, item.kept) == (eid, "deleted", before.sha256, [])
    assert item.removed == files  # the original last
    assert not any(scene.has(k) for k in files)
    after = scene.row(eid)
    assert after.status == "deleted" and after.deleted_by == scene.custodian.id and after.deleted_at is not None
    assert after.sha256 == before.sha256 and after.size == before.size and after.object_key is None
    with scene.db.session() as s:
        assert s.scalars(select(LedgerRecord).where(LedgerRecord.op == before.op)).one()
    deleted = scene.events(eid)[-1]
    assert deleted["action"] == "deleted" and deleted["actor"] == scene.custodian.id
    assert (deleted["reason"], deleted["sha256"], deleted["size"]) == (REASON, before.sha256, before.size)
    assert deleted["removed"] == files and deleted["retention_days"] == 183
    described = scene.client.get(f"/api/v1/evidence/{eid}", headers=scene.hc).json
    assert described["status"] == "deleted" and described["deleted_by"] == scene.custodian.id
    assert described["deleted_at"] and described["has_thumbnail"] is False and described["purge_allowed"] is True
    for path in ("content", "thumbnail"):
        gone = scene.client.get(f"/api/v1/evidence/{eid}/{path}", headers=scene.hc)
        assert gone.status_code == 410 and "retention" in gone.json["message"]
    custody_verifies(scene.settings)
    assert scene.purge().items == []  # nothing is deleted twice


def test_given_a_dismissed_case_when_purged_then_its_cited_evidence_stays_and_the_rest_goes(scene):
    cid, case_id = scene.case()
    iid = scene.inspection(cid)
    cited, uncited = scene.stored(inspection_id=iid), scene.stored(inspection_id=iid)
    scene.cite(iid, cited)
    scene.move(case_id, "dismissed")

    report = scene.purge()

    assert [(i.evidence_id, i.result) for i in report.items] == [(uncited, "deleted")]
    assert scene.row(cited).status == "verified" and scene.has(scene.row(cited).object_key)
    explicit = scene.purge(evidence_ids=[cited]).items
    assert [(i.result, i.reason) for i in explicit] == [("skipped", "a finding cites it: kept for good")]


def test_given_not_penalised_and_caseless_evidence_when_purged_then_both_go(scene):
    cid, case_id = scene.case()
    of_case = scene.stored(case={"client_case_id": cid})
    loose = scene.stored()
    scene.move(case_id, "investigating")
    scene.move(case_id, "not_penalised")
    assert {i.evidence_id for i in scene.purge().items if i.result == "deleted"} == {of_case, loose}


def test_given_open_closed_and_transferred_cases_when_purged_then_their_evidence_is_kept_for_good(scene):
    kept: dict[str, str] = {}
    for final in ("registered", "closed", "transferred"):
        cid, case_id = scene.case()
        kept[final] = scene.stored(case={"client_case_id": cid})
        if final == "closed":
            scene.move(case_id, "investigating", "notified", "decided", decision={"fine_yuan": 2000})
            scene.move(case_id, "executed", "closed")
        elif final == "transferred":
            scene.move(case_id, "transferred", transfer_to="city")
    pending = scene.stored()
    r = scene.client.post(f"/api/v1/custody/holdings/{pending}/transfer", headers=scene.headers,
                          json={"to": scene.custodian.id, "reason": "入库保管"})
    assert r.status_code == 200, r.json

    assert scene.purge().items == []
    with scene.db.session() as s:
        custodian = s.get(Officer, scene.custodian.id)
        assert retention.expired_candidates(s, custodian, utcnow() + LATER, 183) == ([], 0)
    reasons = {i.evidence_id: i.reason for i in scene.purge(evidence_ids=[*kept.values(), pending]).items}
    assert reasons == {
        kept["registered"]: "its case is still open (registered)",
        kept["closed"]: "its case is closed: evidence of a decided or transferred case is kept for good",
        kept["transferred"]: "its case is transferred: evidence of a decided or transferred case is kept for good",
        pending: "a custody hand-over of it is waiting for its receiver",
    }
    assert all(scene.row(e).status == "verified" for e in reasons)


def test_given_evidence_younger_than_the_period_when_purged_then_it_is_untouched(scene):
    young = scene.stored()
    assert scene.purge(after=timedelta(days=100)).items == []
    # A phone whose clock says the capture is two years old does not shorten the period: arrival counts too.
    backdated = scene.stored(captured_at=(utcnow() - timedelta(days=730)).isoformat())
    assert scene.purge(after=timedelta(0)).items == []
    assert [(i.result, i.reason) for i in scene.purge(after=timedelta(0), evidence_ids=[backdated]).items] == [
        ("skipped", "it is younger than the retention period")]
    assert {i.evidence_id for i in scene.purge(after=timedelta(days=200)).items} == {young, backdated}


def test_given_identical_bytes_of_a_live_item_when_purged_then_the_shared_object_is_kept(scene):
    data = os.urandom(8000)
    cid, case_id = scene.case()
    live = scene.stored(data, case={"client_case_id": cid})
    expired = scene.stored(data)
    key = scene.row(live).object_key
    assert scene.row(expired).object_key == key

    (item,) = scene.purge().items
    assert (item.evidence_id, item.result, item.removed, item.kept) == (expired, "deleted", [], [key])
    assert scene.events(expired)[-1]["kept"] == [key]
    assert scene.has(key)
    read = scene.client.get(f"/api/v1/evidence/{live}/content", headers=scene.headers)
    assert read.status_code == 200 and read.data == data

    scene.move(case_id, "dismissed")
    (last,) = scene.purge().items
    assert (last.evidence_id, last.removed) == (live, [key]) and not scene.has(key)


def test_a_dry_run_lists_what_would_go_and_deletes_nothing(scene):
    eid = scene.stored()
    key = scene.row(eid).object_key
    report = scene.purge(dry_run=True)
    assert [(i.evidence_id, i.result, i.removed) for i in report.items] == [(eid, "would_delete", [key])]
    assert report.as_dict()["would_delete"] == 1 and report.as_dict()["remaining"] == 1
    assert scene.has(key) and scene.row(eid).status == "verified"
    assert "deleted" not in [e["action"] for e in scene.events(eid)]


# --------------------------------------------------------------------------- who may, and where


def test_only_a_custodian_purges_and_only_within_their_district(local):
    eid = local.stored()
    local.age(eid)
    body = {"reason": REASON}
    admin = local.officers.headers(local.officers.make(roles=("admin",)))
    assert local.client.post("/api/v1/retention/purge", json=body, headers=local.headers).status_code == 403
    assert local.client.get("/api/v1/retention/candidates", headers=local.headers).status_code == 403
    assert local.client.post("/api/v1/retention/purge", json=body, headers=admin).status_code == 403
    listed = local.client.get("/api/v1/retention/candidates", headers=admin)
    assert listed.status_code == 200 and [c["evidence_id"] for c in listed.json["items"]] == [eid]

    far = local.officers.headers(local.officers.make(region="330108", roles=("custodian",)))
    assert local.client.get("/api/v1/retention/candidates", headers=far).json["total"] == 0
    nothing = local.client.post("/api/v1/retention/purge", json={**body, "evidence_ids": [eid]}, headers=far).json
    assert (nothing["deleted"], nothing["skipped"]) == (0, 1)
    assert nothing["items"][0]["reason"] == "no such evidence within your jurisdiction"
    assert local.row(eid).status == "verified"

    city = local.officers.headers(local.officers.make(region="330100", roles=("custodian",)))
    page = local.client.get("/api/v1/retention/candidates", headers=city).json
    (candidate,) = page["items"]
    assert page["total"] == 1 and candidate["case_id"] is None and candidate["status"] == "verified"
    assert local.client.post("/api/v1/retention/purge", json={}, headers=local.hc).status_code == 422
    done = local.client.post("/api/v1/retention/purge", json=body, headers=local.hc)
    assert done.status_code == 200, done.json
    assert (done.json["deleted"], done.json["failed"], done.json["remaining"]) == (1, 0, 0)
    assert done.json["items"][0]["evidence_id"] == eid and done.json["items"][0]["result"] == "deleted"
    assert local.row(eid).deleted_by == local.custodian.id


def test_the_command_deletes_prints_each_item_and_a_total(local):
    first, second = local.stored(), local.stored()
    young = local.stored()
    local.age(first, second)
    args = ["retention", "purge", "--as", local.custodian.username, "--reason", REASON]
    dry = CliRunner().invoke(main, [*args, "--dry-run"], env=env(local.settings))
    assert dry.exit_code == 0, dry.output
    assert "would delete 2, skipped 0, failed 0" in dry.output and local.row(first).status == "verified"

    result = CliRunner().invoke(main, args, env=env(local.settings))
    assert result.exit_code == 0, result.output
    assert f"deleted {first} sha256={local.row(first).sha256}" in result.output
    assert f"deleted {second}" in result.output and young not in result.output
    assert "deleted 2, skipped 0, failed 0; retention 183 days" in result.output
    custody_verifies(local.settings)

    officer = CliRunner().invoke(main, ["retention", "purge", "--as", local.phone.officer.username,
                                        "--reason", REASON], env=env(local.settings))
    assert officer.exit_code == 1 and "is not an active custodian" in officer.output


@pytest.fixture
def worm(settings, s3_server):
    """S3 with Object Lock, as evidence buckets often are: a legal hold makes the store refuse a delete."""
    from tests.conftest import _empty_tables

    bucket = f"fieldcase-worm-{uuid.uuid4().hex[:8]}"
    application = create_app(replace(settings, s3_bucket=bucket, s3_endpoint_url=s3_server))
    application.extensions["fieldcase"].store.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    yield Scene(application)
    _empty_tables(application.extensions["fieldcase"].db)
    application.extensions["fieldcase"].db.dispose()


def test_a_store_failure_fails_that_item_only_and_the_command_exits_non_zero(worm):
    held, fine = worm.stored(), worm.stored()
    worm.age(held, fine)
    key, other = worm.row(held).object_key, worm.row(fine).object_key
    worm.store.client.put_object_legal_hold(Bucket=worm.store.bucket, Key=key, LegalHold={"Status": "ON"})
    environment = {**env(worm.settings), "FIELDCASE_S3_BUCKET": worm.store.bucket,
                   "FIELDCASE_S3_ENDPOINT_URL": worm.settings.s3_endpoint_url}

    result = CliRunner().invoke(main, ["retention", "purge", "--as", worm.custodian.username, "--reason", REASON],
                                env=environment)

    assert result.exit_code == 1
    assert f"FAILED {held}: could not delete {key}" in result.output
    assert "deleted 1, skipped 0, failed 1" in result.output
    assert worm.row(held).status == "verified" and worm.has(key)
    assert "deleted" not in [e["action"] for e in worm.events(held)]
    assert worm.row(fine).status == "deleted" and not worm.has(other)
    custody_verifies(worm.settings)


def test_a_retention_period_below_six_months_is_refused(local, settings):
    eid = local.stored()
    with pytest.raises(retention.RetentionMisconfigured, match="legal minimum of 180 days"):
        local.purge(days=179)
    short = create_app(replace(settings, retention_days=90))
    try:
        client = short.test_client()
        token = client.post("/api/v1/auth/token", json={"username": local.custodian.username,
                                                         "password": PASSWORD}).json
        h = {"Authorization": "Bearer " + token["access_token"]}
        r = client.post("/api/v1/retention/purge", json={"reason": REASON}, headers=h)
        assert r.status_code == 503 and "FIELDCASE_RETENTION_DAYS is 90" in r.json["message"]
        assert client.get("/api/v1/retention/candidates", headers=h).status_code == 503
    finally:
        short.extensions["fieldcase"].db.dispose()
    result = CliRunner().invoke(main, ["retention", "purge", "--as", local.custodian.username, "--reason", REASON],
                                env={**env(local.settings), "FIELDCASE_RETENTION_DAYS": "120"})
    # From the environment, it is refused before the command starts (backend.core.variables), naming the variable.
    assert result.exit_code == 78 and result.output == (
        "error: FIELDCASE_RETENTION_DAYS=120: must be ≥ 180 (the legal minimum for keeping evidence)\n")
    assert local.row(eid).status == "verified"


# --------------------------------------------------------------------------- never re-created


def test_given_a_deleted_item_when_the_phone_uploads_again_then_410_and_nothing_is_recreated(scene, store_kind):
    declared = os.urandom(9000)
    eid = scene.field.declare(declared)
    assert scene.field.upload(eid, declared[::-1])["status"] == "mismatch"
    plan = scene.field.plan(eid)  # a fresh upload is open when retention runs
    with scene.db.session() as s:
        stale = s.scalars(select(Upload.id).where(Upload.evidence_id == eid, Upload.status == "open")).one()

    (item,) = scene.purge().items
    assert item.result == "deleted" and f"staging/{stale}" in item.removed

    if store_kind == "s3":  # a presigned URL cannot be revoked: the bytes may still land in staging
        status, _h, _b = scene.field.put(plan["url"], declared, plan["headers"])
        assert status == 200
    else:
        status, _h, body = scene.field.put(plan["url"], declared)
        assert status == 410 and "retention" in body["message"]
    for method, path in (("post", "uploads"), ("post", "complete")):
        r = getattr(scene.client, method)(f"/api/v1/evidence/{eid}/{path}", json={}, headers=scene.headers)
        assert r.status_code == 410, r.json
        assert "deleted under the retention policy" in r.json["message"]
    assert scene.client.head(f"/api/v1/evidence/{eid}/content", headers=scene.headers).status_code == 410
    with scene.db.session() as s, pytest.raises(Gone):
        verify_upload(s, scene.store, stale, scene.app.extensions["fieldcase"].media, now=utcnow())
    assert not scene.has(f"staging/{stale}")
    digest = hashlib.sha256(declared).hexdigest()
    assert not scene.has(f"objects/{digest[:2]}/{digest[2:4]}/{digest}")
    row = scene.row(eid)
    assert row.status == "deleted" and row.object_key is None
    with scene.db.session() as s:
        assert "open" not in s.scalars(select(Upload.status).where(Upload.evidence_id == eid)).all()


def test_the_reference_phone_stops_and_may_purge_its_copy_once_the_file_is_deleted(media_app, tmp_path):
    from tests.e2e.test_client_uploads import Field as PhoneField

    field = PhoneField(media_app, tmp_path)
    st = media_app.extensions["fieldcase"]
    try:
        phone = field.phone
        path = field.file("IMG_20260714_093005.jpg", images.jpeg_with_exif((320, 240)))
        eid = phone.capture_evidence(path, "photo", "image/jpeg")  # a snapshot outside any case
        field.push()
        phone.close()
        backup = tmp_path / "backup"
        shutil.copytree(field.dir, backup)  # the phone as it was before the upload
        phone = field.reopen()
        assert [r["status"] for r in phone.upload_pending()] == ["verified"]

        custodian = Officers(st.db, field.client).make(roles=("custodian",))
        with st.db.transaction() as s:
            s.execute(update(Evidence).where(Evidence.id == eid).values(
                captured_at=utcnow() - timedelta(days=200), declared_at=utcnow() - timedelta(days=200)))
        with st.db.session() as s:
            report = purge(s, st.store, s.get(Officer, custodian.id), judged_at=utcnow())
        assert [i.result for i in report.items] == ["deleted"]

        phone.pull()
        assert {f["evidence_id"]: (f["status"], f["purge_allowed"]) for f in phone.evidence_files()} == {
            eid: ("deleted", 1)}

        # A phone restored from a backup still thinks the file has to go up: the server says it is gone.
        phone.close()
        shutil.rmtree(field.dir)
        shutil.copytree(backup, field.dir)
        phone = field.reopen()
        (answer,) = phone.upload_pending()
        assert answer["status"] == "deleted" and answer["purge_allowed"] is True
        assert "retention" in answer["error"]
        assert phone.upload_pending() == []  # it does not try again
        assert [p["evidence_id"] for p in phone.purgeable()] == [eid]
        assert phone.purge(eid) and not Path(path).exists()
    finally:
        field.phone.close()


# --------------------------------------------------------------------------- packages and exports


def test_a_package_with_a_deleted_item_verifies_and_says_the_file_was_deleted_under_retention(local, tmp_path):
    cid, case_id = local.case()
    iid = local.inspection(cid)
    cited, uncited = local.stored(inspection_id=iid), local.stored(inspection_id=iid)
    local.cite(iid, cited)
    local.move(case_id, "dismissed")
    assert [i.evidence_id for i in local.purge().items] == [uncited]

    r = local.client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": "复议答复"}, headers=local.hc)
    assert r.status_code == 200, r.data[:300]
    key = local.client.get("/api/v1/custody/public-key").json["public_key"]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(r.data)).read("manifest.json"))
    items = {i["id"]: i for i in manifest["evidence"]}
    assert items[uncited]["status"] == "deleted" and items[uncited]["file"] is None
    assert items[uncited]["deleted_by"] == local.custodian.id
    assert [json.loads(e["leaf"])["action"] for e in items[uncited]["custody_events"]][-2:] == ["deleted", "exported"]
    listing = zipfile.ZipFile(io.BytesIO(r.data)).read("evidence-list.csv").decode("utf-8-sig")
    assert "deleted under retention" in listing

    path = tmp_path / "package.zip"
    path.write_bytes(r.data)
    ok = CliRunner().invoke(main, ["verify-package", str(path), "--public-key", key])
    assert ok.exit_code == 0, ok.output
    assert "its file was deleted under the retention policy" in ok.output and REASON in ok.output
    assert "1 deleted under retention" in ok.output and ok.output.rstrip().endswith(": OK")

    # Who asked and why: the export is in the deleted item's custody log too.
    exported = [e for e in local.events(uncited) if e["action"] == "exported"]
    assert [(e["actor"], e["purpose"]) for e in exported] == [(local.custodian.id, "复议答复")]

    def tamper(change) -> list[str]:
        return verify_package(io.BytesIO(rewrite(r.data, *change)), key).problems

    def drop_file(entries: dict[str, bytes]) -> None:
        del entries[items[cited]["file"]]

    def as_(status: str):
        def change(m: dict) -> None:
            item = next(i for i in m["evidence"] if i["id"] == cited)
            item["status"], item["file"] = status, None
        return change

    def hide_deletion(m: dict) -> None:
        item = next(i for i in m["evidence"] if i["id"] == uncited)
        item["custody_events"] = [e for e in item["custody_events"] if json.loads(e["leaf"])["action"] != "deleted"]

    assert any("is missing from the package" in p for p in tamper((None, drop_file)))
    assert any("listed as deleted, but no proven 'deleted' custody event" in p
               for p in tamper((as_("deleted"), drop_file)))
    assert any("the custody log shows it verified, but its file is not in the package" in p
               for p in tamper((as_("declared"), drop_file)))
    assert any("listed as deleted, but no proven 'deleted' custody event" in p for p in tamper((hide_deletion, None)))
