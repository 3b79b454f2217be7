"""SM3 for evidence verified before the server computed it (issue 23, item 3): `fieldcase evidence backfill-sm3`.

Given items verified before migration 0016 (their rows' `sm3` NULL, as the migration left them), when the command
runs, then each gets the SM3 of its stored file, bound by a `digest_added` custody event, shown by the API, the
package's proven custody events and its evidence list, and a re-run changes nothing. Given a stored file altered
after it was verified, then that item is named, nothing is written for it, the others are filled all the same, and
the command exits 1. On the local store and on S3 (moto).
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from backend.cli import main
from backend.core.models import CustodyEvent, Evidence, Upload, utcnow
from media import holders
from media.custody import log as custody
from media.package_verify import verify_package
from media.s3_store import S3Store
from media.store import LocalStore
from tests.casework.test_system_audit import env_of, named, verify
from tests.conftest import Officers
from tests.media.test_sm3_evidence import PURPOSE, Hand, leaves, sha256, sm3

NOT_COMPUTED = "（未计算 not computed）"


class Site:
    """The app under test, its phone, and `fieldcase` run against the same database and store."""

    def __init__(self, app) -> None:
        self.app, self.state = app, app.extensions["fieldcase"]
        self.db, self.store, self.settings = self.state.db, self.state.store, self.state.settings
        self.officers = Officers(self.db, app.test_client())
        self.hand = Hand(app, self.officers)

    def env(self) -> dict[str, str]:
        extra = {}
        if isinstance(self.store, S3Store):
            extra = {"FIELDCASE_S3_BUCKET": self.store.bucket,
                     "FIELDCASE_S3_ENDPOINT_URL": self.settings.s3_endpoint_url}
        return env_of(self.settings, **extra)

    def backfill(self, *args: str) -> Result:
        result = CliRunner().invoke(main, ["evidence", "backfill-sm3", *args], env=self.env())
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    def audit(self, *args: str) -> tuple[int, dict]:
        return verify(self.settings, *args, **{k: v for k, v in self.env().items() if k.startswith("FIELDCASE_S3")})

    def verified(self, data: bytes, **extra: Any) -> str:
        eid, result = self.hand.declare(data, ("sha256",), **extra)
        assert result["status"] == "applied", result
        assert self.hand.upload(eid, data)["status"] == "verified"
        return eid

    def before_sm3(self, *ids: str) -> None:
        """As migration 0016 left the rows it found: verified, `sm3` NULL."""
        with self.db.transaction() as s:
            s.execute(update(Evidence).where(Evidence.id.in_(ids)).values(sm3=None))

    def verified_before_sm3(self, data: bytes, **extra: Any) -> str:
        """An item verified as the server did before migration 0016: declared and uploaded by the phone, its bytes
        hashed with SHA-256 alone, so its `verified` custody event names no SM3 either."""
        hand = self.hand
        eid, result = hand.declare(data, ("sha256",), **extra)
        assert result["status"] == "applied", result
        plan = hand.client.post(f"/api/v1/evidence/{eid}/uploads", headers=hand.headers).json
        if "localhost" in plan["url"]:
            put = hand.client.put(plan["url"].split("localhost", 1)[1], data=data, headers=hand.headers).status_code
        else:
            put = requests.put(plan["url"], data=data, headers=plan["headers"], timeout=30).status_code
        assert put == 200
        now = utcnow()
        with self.db.transaction() as s:  # media/uploads.py verify_upload, before 0016
            upload = s.scalars(select(Upload).where(Upload.evidence_id == eid)).one()
            evidence = s.get(Evidence, eid)
            digest = self.store.staged_digest(upload.id)
            assert (digest.sha256, digest.size) == (evidence.sha256, evidence.size)
            upload.status, upload.open_key, upload.completed_at = "verified", None, now
            upload.received_sha256, upload.received_size = digest.sha256, digest.size
            evidence.object_key = self.store.promote(upload.id, digest.sha256)
            evidence.status, evidence.verified_at, evidence.flags = "verified", now, []
            custody.record(s, "verified", eid, upload.officer_id, at=now, upload=upload.id, sha256=digest.sha256,
                           size=digest.size, object_key=evidence.object_key)
            holders.take_first_custody(s, evidence, upload.officer_id, now=now)
        return eid

    def row(self, eid: str) -> Evidence:
        with self.db.session() as s:
            row = s.get(Evidence, eid)
            s.expunge(row)
            return row

    def added(self, eid: str) -> list[dict[str, Any]]:
        return [leaf for leaf in leaves(self.db, eid) if leaf["action"] == "digest_added"]

    def log_size(self) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(CustodyEvent))

    def alter(self, eid: str, data: bytes) -> None:
        """Change the stored object's bytes behind the server's back."""
        key = self.row(eid).object_key
        altered = bytearray(data)
        altered[len(data) // 2] ^= 0x01
        if isinstance(self.store, LocalStore):
            path = Path(self.store.root) / key
            os.chmod(path, 0o640)
            path.write_bytes(bytes(altered))
        else:
            self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=bytes(altered))

    def api_sm3(self, eid: str) -> str | None:
        answer = self.hand.client.get(f"/api/v1/evidence/{eid}", headers=self.hand.headers)
        assert answer.status_code == 200, answer.json
        return answer.json["sm3"]


@pytest.fixture
def site(media_app) -> Site:
    return Site(media_app)


def summary(result: Result) -> str:
    return result.stdout.rstrip().splitlines()[-1]


def alarms(result: Result) -> list[str]:
    """The items the command named (its stderr also holds the log lines of the S3 test server's thread)."""
    return sorted(line for line in result.stderr.splitlines() if line.startswith(("MISMATCH", "MISSING", "FAILED")))


def test_given_items_verified_before_sm3_when_backfilled_then_each_has_its_files_sm3_and_a_rerun_changes_nothing(
        site):
    files = {name: os.urandom(30_000 + n) for n, name in enumerate(("first", "second", "third"))}
    files["twin"] = files["first"]  # identical bytes, one stored object
    ids = {name: site.verified(data) for name, data in files.items()}
    newer = site.verified(os.urandom(12_000))  # verified since 0016: it has its SM3
    never, _ = site.hand.declare(os.urandom(500), ("sha256",))  # declared, never uploaded: nothing to hash
    site.before_sm3(*ids.values())
    assert all(site.api_sm3(eid) is None for eid in ids.values())
    untouched = {eid: leaves(site.db, eid) for eid in (newer, never)}

    result = site.backfill("--batch", "3")

    assert result.exit_code == 0, result.output
    assert summary(result) == ("SM3 added to 4 item(s); mismatch 0, missing 0, failed 0, changed meanwhile 0; "
                               "0 verified item(s) still without SM3")
    for name, eid in ids.items():
        data = files[name]
        assert site.row(eid).sm3 == sm3(data) == site.api_sm3(eid), name
        (leaf,) = site.added(eid)  # one custody event binds it
        assert (leaf["actor"], leaf["sha256"], leaf["sm3"], leaf["size"], leaf["object_key"]) == (
            "fieldcase", sha256(data), sm3(data), len(data), site.row(eid).object_key), name
    assert {eid: leaves(site.db, eid) for eid in (newer, never)} == untouched
    assert site.row(never).sm3 is None and site.row(never).status == "declared"
    # The log still verifies, and the whole-system audit re-hashes each file against its new SM3.
    code, report = site.audit()
    assert code == 0, report["problems"]

    size, rows = site.log_size(), {eid: site.row(eid).sm3 for eid in ids.values()}
    again = site.backfill()
    assert again.exit_code == 0, again.output
    assert summary(again) == ("SM3 added to 0 item(s); mismatch 0, missing 0, failed 0, changed meanwhile 0; "
                              "0 verified item(s) still without SM3")
    assert site.log_size() == size and {eid: site.row(eid).sm3 for eid in ids.values()} == rows


def test_given_a_file_altered_after_verification_when_backfilled_then_it_alone_is_named_and_left_and_exit_is_1(
        site):
    files = {name: os.urandom(20_000 + n) for n, name in enumerate(("good", "altered", "gone", "also_good"))}
    ids = {name: site.verified(data) for name, data in files.items()}
    site.before_sm3(*ids.values())
    site.alter(ids["altered"], files["altered"])
    site.store.remove(site.row(ids["gone"]).object_key)

    result = site.backfill("--batch", "10")  # all four in one transaction: the bad ones roll nothing back

    assert result.exit_code == 1, result.output
    # Named by id only (one line each, on stderr), nothing of their bytes or digests anywhere in the report.
    assert alarms(result) == sorted([
        f"MISMATCH {ids['altered']}: its stored file no longer hashes to the SHA-256 it was verified with; "
        "nothing written (a custody alarm: run `fieldcase verify`)",
        f"MISSING {ids['gone']}: no such object; nothing written"])
    assert summary(result) == ("SM3 added to 2 item(s); mismatch 1, missing 1, failed 0, changed meanwhile 0; "
                               "2 verified item(s) still without SM3")
    assert not {sha256(files["altered"]), sm3(files["altered"])} & set(result.stdout.split())
    for name in ("altered", "gone"):
        assert site.row(ids[name]).sm3 is None and site.added(ids[name]) == [], name
    for name in ("good", "also_good"):
        assert site.row(ids[name]).sm3 == sm3(files[name]) and len(site.added(ids[name])) == 1, name

    # Where the alarm is kept: the whole-system audit names the altered file and the missing one.
    code, report = site.audit()
    assert code == 1
    assert any("the bytes were altered" in p["message"] for p in named(report, "evidence", "evidence", ids["altered"]))
    assert any("missing from the store" in p["message"] for p in named(report, "evidence", "evidence", ids["gone"]))

    size = site.log_size()
    again = site.backfill()  # still an alarm, still nothing written
    assert again.exit_code == 1 and alarms(again) == alarms(result)
    assert summary(again).startswith("SM3 added to 0 item(s); mismatch 1, missing 1,")
    assert site.log_size() == size and site.row(ids["altered"]).sm3 is None


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_sm3s_the_server_computed_when_rows_are_edited_then_fieldcase_verify_names_them_sampled_or_not(site):
    """An SM3 the phone did not declare is tied to its file by the custody log alone (the `verified` event, or the
    backfill's `digest_added`): the audit holds every item's SM3 against it, not only the files it re-hashes."""
    edited, erased, untouched = (site.verified(os.urandom(20_000 + n)) for n in range(3))
    backfilled = site.verified_before_sm3(os.urandom(9_000))
    assert site.backfill().exit_code == 0
    assert site.audit("--sample", "1")[0] == 0

    with site.db.transaction() as s:
        s.execute(update(Evidence).where(Evidence.id.in_([edited, backfilled])).values(sm3="ab" * 32))
        s.execute(update(Evidence).where(Evidence.id == erased).values(sm3=None))
    code, report = site.audit("--sample", "1")

    assert code == 1
    for eid in (edited, backfilled):
        assert "its SM3 is not the one its custody log recorded when the server computed it" in [
            p["message"] for p in named(report, "evidence", "evidence", eid)], report["problems"]
    assert "its custody log records an SM3 for it, but the item has none" in [
        p["message"] for p in named(report, "evidence", "evidence", erased)], report["problems"]
    assert named(report, "evidence", "evidence", untouched) == []


def test_a_limited_run_fills_that_many_in_batches_and_the_next_run_goes_on_from_there(site):
    files = [os.urandom(5_000 + n) for n in range(5)]
    ids = [site.verified(data) for data in files]
    site.before_sm3(*ids)

    first = site.backfill("--limit", "3", "--batch", "2")
    assert first.exit_code == 0, first.output
    assert summary(first) == ("SM3 added to 3 item(s); mismatch 0, missing 0, failed 0, changed meanwhile 0; "
                              "2 verified item(s) still without SM3")
    assert sum(site.row(eid).sm3 is not None for eid in ids) == 3

    second = site.backfill("--batch", "2")
    assert second.exit_code == 0, second.output
    assert summary(second).startswith("SM3 added to 2 item(s);")
    assert [site.row(eid).sm3 for eid in ids] == [sm3(data) for data in files]
    assert [len(site.added(eid)) for eid in ids] == [1] * 5


def test_given_a_package_of_items_verified_before_sm3_when_backfilled_then_its_evidence_list_shows_their_sm3(site):
    hand = site.hand
    custodian = site.officers.make(roles=("custodian",))
    case_id, iid = hand.open_inspection()
    files = {"legacy": os.urandom(21_000), "nulled": os.urandom(22_000)}
    ids = {"legacy": site.verified_before_sm3(files["legacy"], inspection_id=iid),  # its `verified` event: no SM3
           "nulled": site.verified(files["nulled"], inspection_id=iid)}
    site.before_sm3(*ids.values())
    key = hand.client.get("/api/v1/custody/public-key").json["public_key"]

    def package() -> tuple[bytes, dict[str, dict], dict[str, dict]]:
        r = hand.client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE},
                            headers=site.officers.headers(custodian))
        assert r.status_code == 200, r.data[:300]
        zf = zipfile.ZipFile(io.BytesIO(r.data))
        items = {i["id"]: i for i in json.loads(zf.read("manifest.json"))["evidence"]}
        rows = list(csv.reader(io.StringIO(zf.read("evidence-list.csv").decode("utf-8-sig"))))
        listed = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
        return r.data, items, {eid: listed[str(item["item"])] for eid, item in items.items()}

    _, _, before = package()
    assert before[ids["legacy"]]["SM3"] == NOT_COMPUTED  # what the issue is about

    assert site.backfill().exit_code == 0

    data, items, after = package()
    for name, eid in ids.items():
        assert after[eid]["SM3"] == sm3(files[name]), name
        # The item is listed as every SHA-256 phone's is (no `sm3` key); its SM3 is in a proven custody event.
        assert "sm3" not in items[eid], name
        proven = [json.loads(e["leaf"]) for e in items[eid]["custody_events"]]
        assert [(leaf["sha256"], leaf["sm3"]) for leaf in proven if leaf["action"] == "digest_added"] == [
            (sha256(files[name]), sm3(files[name]))], name
    assert "补算摘要 digest added" in after[ids["legacy"]]["监管记录 Custody history"]
    report = verify_package(io.BytesIO(data), key)
    assert report.ok, report.problems
