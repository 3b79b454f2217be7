"""SM3 beside SHA-256 for evidence (issue 23, item 3): a declaration carries `sm3`, `sha256` or both.

Given a phone that declares only SM3 (an SM phone), or both, or only SHA-256 (every phone so far), when its file
goes up on any path (the local store, S3 in one PUT or in parts, verified in the request or by an RQ job worker),
then the server hashes the bytes once with both, verifies them against whichever was declared (both when both),
and keeps both; other bytes end `mismatch`, whichever digest they fail. A package lists both digests of an item
declared with SM3 (an item declared with SHA-256 alone is listed as before, the server's SM3 of it in its proven
`verified` custody event), the evidence list shows both for every item, and `verify-package` re-hashes a file with
SM3 when its item carries one and names a mismatch. Phones that declare SHA-256 alone keep working as before.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select, update

from backend.core.models import CustodyEvent, Evidence, LedgerRecord, Upload
from media.package_verify import verify_package
from tests.casework.test_system_audit import named, verify
from tests.e2e.test_client_uploads import HERE, MiB
from tests.e2e.test_client_uploads import Field as ReferenceField
from tests.media.test_evidence_list import pdf_text, squash
from tests.media.test_jobs import _phone, run_worker_burst
from tests.media.test_package import cli, rewrite
from tests.phones import TestPhone, uid

PURPOSE = "移送法制审核"
INSTITUTION = {"name": "星光艺术培训中心", "region": "330106"}
# The SM3 of "abc", GB/T 32905-2016 Appendix A.1: the helper below is the standard's SM3, not some other hash.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def sm3(data: bytes) -> str:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_tests_sm3_is_the_standards():
    assert sm3(b"abc") == SM3_ABC


class Pattern(io.RawIOBase):
    """`size` bytes of a repeated random block, made as they are read: a big file that is never in memory."""

    def __init__(self, size: int, block: bytes, *, readinto: bool = True) -> None:
        self.left, self.block, self.pos = size, block, 0
        if not readinto:
            self.readinto = None  # type: ignore[assignment]  # a stream with read() only, as some bodies are

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, len(self.block) if n is None or n < 0 else n)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self.block) - self.pos)
            out += self.block[self.pos:self.pos + take]
            self.pos = (self.pos + take) % len(self.block)
        self.left -= n
        return bytes(out)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


@pytest.mark.parametrize("readinto", [True, False], ids=["readinto", "read"])
def test_given_a_large_file_when_it_is_hashed_then_both_digests_come_from_one_pass_in_flat_memory(readinto):
    import tracemalloc

    from media.store import hash_stream

    size, block = 48 * MiB + 5, os.urandom(MiB + 7)
    want_sha, want_sm3, stream = hashlib.sha256(), hashes.Hash(hashes.SM3()), Pattern(size, block)
    while data := stream.read(MiB):
        want_sha.update(data)
        want_sm3.update(data)
    tracemalloc.start()
    try:
        got = hash_stream(Pattern(size, block, readinto=readinto))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (got.sha256, got.sm3, got.size) == (want_sha.hexdigest(), want_sm3.finalize().hex(), size)
    assert peak < 8 * MiB, f"{peak} bytes at the peak for a {size}-byte file"


def leaves(db, evidence_id: str) -> list[dict[str, Any]]:
    with db.session() as s:
        return [json.loads(e.leaf) for e in s.scalars(select(CustodyEvent).where(
            CustodyEvent.evidence_id == evidence_id).order_by(CustodyEvent.leaf_index))]


def leaf(db, evidence_id: str, action: str) -> dict[str, Any]:
    (found,) = [e for e in leaves(db, evidence_id) if e["action"] == action]
    return found


def signed_body(db, evidence_id: str) -> dict[str, Any]:
    """The body of the evidence.capture the server ledgered, as the phone signed it."""
    with db.session() as s:
        for text in s.scalars(select(LedgerRecord.jws).where(LedgerRecord.type == "evidence.capture")):
            payload = json.loads(base64.urlsafe_b64decode(text.split(".")[1] + "=="))
            if payload["body"]["evidence_id"] == evidence_id:
                return payload["body"]
    raise AssertionError(f"no evidence.capture of {evidence_id} in the ledger")


def kept(db, evidence_id: str) -> tuple[str | None, str | None]:
    with db.session() as s:
        row = s.get(Evidence, evidence_id)
        return row.sha256, row.sm3


# --------------------------------------------------------------------------- the reference phone, every store path


@pytest.mark.parametrize(("store_kind", "size", "method"), [
    ("local", 300_000, "put"), ("s3", 300_000, "put"), ("s3", 7 * MiB + 123, "multipart")],
    ids=["local store", "S3 single PUT", "S3 multipart"])
def test_given_a_phone_that_declares_only_sm3_when_it_uploads_then_the_item_is_verified_and_both_digests_are_kept(
        media_app, tmp_path, store_kind, size, method):
    field = ReferenceField(media_app, tmp_path)
    db = media_app.extensions["fieldcase"].db
    try:
        phone = field.phone
        phone.evidence_digests = ("sm3",)  # an SM phone
        iid = field.inspection()
        data = os.urandom(size)
        eid = phone.capture_evidence(field.file("CAM0042_0001.mp4", data), "video", "video/mp4", inspection_id=iid,
                                     location=HERE)
        field.push()

        # It signed SM3 alone, and the server holds just that until the bytes arrive.
        body = signed_body(db, eid)
        assert body["sm3"] == sm3(data) and "sha256" not in body
        declared = leaf(db, eid, "declared")
        assert declared["sm3"] == sm3(data) and "sha256" not in declared
        before = field.evidence(eid)
        assert (before["status"], before["sha256"], before["sm3"]) == ("declared", None, sm3(data))

        (result,) = phone.upload_pending()
        assert result["status"] == "verified" and result["purge_allowed"] is True, result

        answer = field.evidence(eid)
        assert (answer["status"], answer["sha256"], answer["sm3"]) == ("verified", sha256(data), sm3(data))
        (upload,) = answer["uploads"]
        assert upload["method"] == method
        assert (upload["received_sha256"], upload["received_sm3"], upload["received_size"]) == (
            sha256(data), sm3(data), size)
        assert kept(db, eid) == (sha256(data), sm3(data))
        verified = leaf(db, eid, "verified")
        assert (verified["sha256"], verified["sm3"], verified["size"]) == (sha256(data), sm3(data), size)
        served = field.content(eid)
        assert served.status_code == 200 and served.data == data
        # The content address is still the SHA-256 (identical bytes stored once, whatever was declared).
        assert served.headers["ETag"] == f'"{sha256(data)}"'
        if store_kind == "s3":  # the bytes went to the object store, in parts when large, never through the API
            parts = [put["part"] for put in field.s3.puts]
            assert parts == ([1, 2] if method == "multipart" else [None]) and not field.wire.puts
    finally:
        field.phone.close()


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_a_phone_that_declares_only_sha256_then_its_declaration_is_as_before_and_the_server_adds_sm3(
        media_app, tmp_path):
    field = ReferenceField(media_app, tmp_path)
    db = media_app.extensions["fieldcase"].db
    try:
        phone = field.phone
        assert phone.evidence_digests == ("sha256",)  # the default: every phone so far
        data = os.urandom(50_000)
        eid = phone.capture_evidence(data, "photo", "image/jpeg", inspection_id=field.inspection())
        field.push()
        body = signed_body(db, eid)
        assert body["sha256"] == sha256(data) and "sm3" not in body
        assert "sm3" not in leaf(db, eid, "declared")
        assert field.evidence(eid)["sm3"] is None
        assert [r["status"] for r in phone.upload_pending()] == ["verified"]
        answer = field.evidence(eid)
        assert (answer["sha256"], answer["sm3"]) == (sha256(data), sm3(data))
        # Asked for both on one capture.
        both = phone.capture_evidence(data + b"!", "photo", "image/jpeg", digests=("sha256", "sm3"))
        field.push()
        body = signed_body(db, both)
        assert (body["sha256"], body["sm3"]) == (sha256(data + b"!"), sm3(data + b"!"))
        with pytest.raises(ValueError, match="digests must be"):
            phone.capture_evidence(data, "photo", "image/jpeg", digests=("md5",))
    finally:
        field.phone.close()


# --------------------------------------------------------------------------- the job worker


def test_given_a_phone_that_declares_only_sm3_when_a_job_worker_verifies_it_then_both_digests_are_kept(
        rq_app, rq_settings, tmp_path):
    phone, officers = _phone(rq_app, tmp_path)
    headers = officers.headers(phone._officer)
    client = rq_app.test_client()
    db = rq_app.extensions["fieldcase"].db
    try:
        phone.evidence_digests = ("sm3",)
        case = phone.open_case(INSTITUTION, summary="夜间违规培训核查")
        good, bad = os.urandom(200_000), os.urandom(150_000)
        eid = phone.capture_evidence(good, "video", "video/mp4", case=case)
        changed = phone.capture_evidence(bad, "video", "video/mp4", case=case)
        # The second file changes on the phone after it was signed (same size): its bytes no longer match.
        path = next(f["path"] for f in phone.evidence_files() if f["evidence_id"] == changed)
        altered = bytearray(bad)
        altered[1000] ^= 0xFF
        Path(path).write_bytes(bytes(altered))
        assert set(phone.push()["counts"]) == {"applied"}

        assert {r["status"] for r in phone.upload_pending()} == {"uploaded"}  # 202: a worker has them
        assert client.get(f"/api/v1/evidence/{eid}", headers=headers).json["status"] == "declared"

        run_worker_burst(rq_settings, tmp_path)

        answer = client.get(f"/api/v1/evidence/{eid}", headers=headers).json
        assert (answer["status"], answer["sha256"], answer["sm3"]) == ("verified", sha256(good), sm3(good))
        verified = leaf(db, eid, "verified")
        assert (verified["sha256"], verified["sm3"], verified["verifier"]) == (
            sha256(good), sm3(good), "rq:jobs-test-worker")
        assert kept(db, eid) == (sha256(good), sm3(good))

        wrong = client.get(f"/api/v1/evidence/{changed}", headers=headers).json
        assert (wrong["status"], wrong["sha256"], wrong["sm3"]) == ("mismatch", None, sm3(bad))
        (upload,) = wrong["uploads"]
        assert (upload["received_sha256"], upload["received_sm3"]) == (sha256(bytes(altered)), sm3(bytes(altered)))
        mismatch = leaf(db, changed, "mismatch")
        assert mismatch["received_sm3"] == sm3(bytes(altered)) and mismatch["verifier"] == "rq:jobs-test-worker"
    finally:
        phone.close()


# --------------------------------------------------------------------------- mismatches, by hand-made declarations


class Hand:
    """A phone whose declarations the test writes itself, uploading by the server's plan (API or presigned S3)."""

    def __init__(self, app, officers) -> None:
        self.app, self.client = app, app.test_client()
        self.db = app.extensions["fieldcase"].db
        officer = officers.make()
        self.phone = TestPhone(self.client, officer, officers.headers(officer))
        self.headers = self.phone.headers

    def declare(self, data: bytes, digests: dict[str, str] | tuple[str, ...], **extra: Any) -> tuple[str, dict]:
        said = digests if isinstance(digests, dict) else {
            name: {"sha256": sha256, "sm3": sm3}[name](data) for name in digests}
        body = {"evidence_id": uid(), "kind": "photo", "media_type": "image/jpeg", **said, "size": len(data),
                "captured_at": self.phone.clock.isoformat(), **extra}
        (result,) = self.phone.push([self.phone.record("evidence.capture", body)])["results"]
        return body["evidence_id"], result

    def open_inspection(self) -> tuple[str, str]:
        """A case opened at the institution and an inspection started in it: (the server's case id, inspection id)."""
        cid, opened = self.phone.open_case(INSTITUTION)
        iid, started = self.phone.start(cid, [self.phone.officer.id])
        results = self.phone.push([opened, started])["results"]
        assert [r["status"] for r in results] == ["applied", "applied"], results
        return results[0]["refs"]["case_id"], iid

    def upload(self, eid: str, data: bytes) -> dict:
        plan = self.client.post(f"/api/v1/evidence/{eid}/uploads", headers=self.headers)
        assert plan.status_code == 200, plan.json
        url = plan.json["url"]
        if "localhost" in url:
            assert self.client.put(url.split("localhost", 1)[1], data=data, headers=self.headers).status_code == 200
        else:
            assert requests.put(url, data=data, headers=plan.json["headers"], timeout=30).status_code == 200
        done = self.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=self.headers)
        assert done.status_code == 200, done.json
        return done.json


@pytest.fixture
def hand(media_app) -> Hand:
    from tests.conftest import Officers

    db = media_app.extensions["fieldcase"].db
    return Hand(media_app, Officers(db, media_app.test_client()))


@pytest.mark.parametrize("declared", [("sm3",), ("sha256",), ("sha256", "sm3")], ids=["sm3", "sha256", "both"])
def test_given_a_declaration_when_other_bytes_arrive_then_it_ends_mismatch_whichever_digest_was_declared(
        hand, declared):
    data = os.urandom(40_000)
    tampered = bytearray(data)
    tampered[7] ^= 0x01
    eid, result = hand.declare(data, declared)
    assert result["status"] == "applied", result

    answer = hand.upload(eid, bytes(tampered))
    assert answer["status"] == "mismatch" and answer["purge_allowed"] is False
    (upload,) = answer["uploads"]
    assert (upload["status"], upload["received_sha256"], upload["received_sm3"]) == (
        "mismatch", sha256(bytes(tampered)), sm3(bytes(tampered)))
    # The item keeps only what was declared: nothing of the wrong bytes becomes its hash.
    assert (answer["sha256"], answer["sm3"]) == tuple(
        {"sha256": sha256, "sm3": sm3}[n](data) if n in declared else None for n in ("sha256", "sm3"))
    mismatch = leaf(hand.db, eid, "mismatch")
    assert (mismatch["received_sha256"], mismatch["received_sm3"]) == (sha256(bytes(tampered)), sm3(bytes(tampered)))
    assert hand.client.get(f"/api/v1/evidence/{eid}/content", headers=hand.headers).status_code == 409

    again = hand.upload(eid, data)  # the right bytes, in a fresh upload
    assert (again["status"], again["sha256"], again["sm3"], len(again["uploads"])) == (
        "verified", sha256(data), sm3(data), 2)


@pytest.mark.parametrize("store_kind", ["local"])
@pytest.mark.parametrize("wrong", ["sha256", "sm3"])
def test_given_both_declared_when_the_bytes_match_only_one_then_it_is_a_mismatch(hand, wrong):
    data, other = os.urandom(30_000), os.urandom(30_000)
    said = {"sha256": sha256(other if wrong == "sha256" else data), "sm3": sm3(other if wrong == "sm3" else data)}
    eid, result = hand.declare(data, said)
    assert result["status"] == "applied"
    answer = hand.upload(eid, data)
    assert answer["status"] == "mismatch", answer
    assert (answer["sha256"], answer["sm3"]) == (said["sha256"], said["sm3"])
    assert kept(hand.db, eid) == (said["sha256"], said["sm3"])


@pytest.mark.parametrize("store_kind", ["local"])
def test_a_declaration_needs_a_digest_each_64_lower_case_hex_digits(hand):
    data = b"a signature pad left blank? no: some bytes"
    cases = {
        "neither": {},
        "sm3 upper case": {"sm3": sm3(data).upper()},
        "sm3 too short": {"sm3": sm3(data)[:63]},
        "sm3 null": {"sm3": None},
        "sm3 null beside a good sha256": {"sha256": sha256(data), "sm3": None},
        "sm3 not a string": {"sm3": 12345},
        "an unknown digest": {"sm2": sm3(data)},
    }
    for case, said in cases.items():
        eid, result = hand.declare(data, said)
        assert (result["status"], result["code"]) == ("invalid", "bad_body"), (case, result)
        with hand.db.session() as s:
            assert s.get(Evidence, eid) is None, case
    eid, result = hand.declare(data, ("sm3",))
    assert result["status"] == "applied" and kept(hand.db, eid) == (None, sm3(data))


# --------------------------------------------------------------------------- packages and the evidence list


class Exported:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


@pytest.fixture
def exported(app, client, officers) -> Exported:
    """A case with an item declared by SM3 alone, one by both, one by SHA-256 alone, one by SHA-256 alone verified
    before the server computed SM3 (its row's `sm3` set NULL, as migration 0016 leaves the rows it finds; its
    `verified` custody event, written by this server, still names the SM3), and one declared by SM3 alone and never
    uploaded."""
    custodian = officers.make(roles=("custodian",))
    hand = Hand(app, officers)
    case_id, iid = hand.open_inspection()
    files = {name: os.urandom(20_000 + n) for n, name in enumerate(("sm3", "both", "sha256", "legacy", "never"))}
    digests = {"sm3": ("sm3",), "both": ("sha256", "sm3"), "sha256": ("sha256",), "legacy": ("sha256",),
               "never": ("sm3",)}
    ids = {}
    for name, data in files.items():
        ids[name], result = hand.declare(data, digests[name], inspection_id=iid)
        assert result["status"] == "applied", result
        if name != "never":
            assert hand.upload(ids[name], data)["status"] == "verified"
    with app.extensions["fieldcase"].db.transaction() as s:  # as a row verified before migration 0016
        s.execute(update(Evidence).where(Evidence.id == ids["legacy"]).values(sm3=None))
    hc = officers.headers(custodian)
    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE}, headers=hc)
    assert r.status_code == 200, r.data[:300]
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    return Exported(zip=r.data, zf=zf, ids=ids, files=files, signer=app.extensions["fieldcase"].signer,
                    key=client.get("/api/v1/custody/public-key").json["public_key"],
                    items={i["id"]: i for i in json.loads(zf.read("manifest.json"))["evidence"]})


# The keys of a manifest item as every package had them before SM3 (docs/protocol.md, "Evidence packages, as built").
PRE_SM3_ITEM = {"item", "id", "sha256", "size", "kind", "media_type", "captured_at", "device", "officer",
                "officer_name", "inspection_id", "status", "file", "deleted_at", "deleted_by", "custody_holder",
                "custody_holder_name", "custody_events"}


def test_given_sm3_and_sha256_items_when_exported_then_the_manifest_shows_both_and_the_package_verifies(
        exported, tmp_path):
    e = exported
    item = {name: e.items[eid] for name, eid in e.ids.items()}
    for name in ("sm3", "both"):  # declared with SM3: the item lists both
        data = e.files[name]
        assert (item[name]["sha256"], item[name]["sm3"]) == (sha256(data), sm3(data)), name
        assert hashlib.sha256(e.zf.read(item[name]["file"])).hexdigest() == sha256(data)
    never = item["never"]
    assert (never["status"], never["sha256"], never["sm3"], never["file"]) == (
        "declared", None, sm3(e.files["never"]), None)
    # An item whose phone declared SHA-256 alone is listed exactly as before SM3, no `sm3` key at all, as verify.html
    # reads it; the SM3 the server computed of its file is in its proven `verified` custody event.
    for name in ("sha256", "legacy"):
        assert set(item[name]) == PRE_SM3_ITEM and item[name]["sha256"] == sha256(e.files[name]), name
    verified = [json.loads(c["leaf"]) for c in item["sha256"]["custody_events"]
                if json.loads(c["leaf"])["action"] == "verified"]
    assert [v["sm3"] for v in verified] == [sm3(e.files["sha256"])]

    report = verify_package(io.BytesIO(e.zip), e.key)
    assert report.ok, report.problems
    assert report.files == 4
    result = cli(tmp_path, e.zip, "--public-key", e.key)
    assert result.exit_code == 0 and result.output.rstrip().endswith(": OK"), result.output


def test_given_sm3_and_sha256_items_when_exported_then_the_evidence_list_shows_both_in_csv_html_and_pdf(
        exported, tmp_path):
    e = exported
    rows = list(csv.reader(io.StringIO(e.zf.read("evidence-list.csv").decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[3:5] == ["SHA-256", "SM3"]
    by_file = {r[0]: dict(zip(header, r, strict=True)) for r in body}
    for name, eid in e.ids.items():
        row = by_file[str(e.items[eid]["item"])]
        data = e.files[name]
        assert row["SHA-256"] == (sha256(data) if name != "never" else "（未计算 not computed）"), name
        # Every item's SM3: declared, or (SHA-256 phones; `legacy` too, whose row lost it) its verified event's.
        assert row["SM3"] == sm3(data), name
    page = squash(e.zf.read("evidence-list.html").decode())
    paper = squash(pdf_text(e.zf.read("evidence-list.pdf"), tmp_path))
    for name in ("sm3", "both", "sha256", "never"):
        assert sm3(e.files[name]) in page and sm3(e.files[name]) in paper, name
    assert '<tdclass="mono">' + sm3(e.files["sm3"]) in page


def _set_item(e: Exported, name: str, key: str, value: Any):
    def change(m: dict) -> None:
        next(i for i in m["evidence"] if i["id"] == e.ids[name])[key] = value
    return change


def _flip_file(e: Exported, name: str):
    def change(entries: dict[str, bytes]) -> None:
        path = e.items[e.ids[name]]["file"]
        data = bytearray(entries[path])
        data[100] ^= 0x01
        entries[path] = bytes(data)
    return change


def test_given_a_package_when_an_sm3_or_a_file_is_altered_then_verify_package_names_the_sm3_mismatch(exported):
    e = exported
    fake = "ab" * 32

    def problems(**change: Any) -> list[str]:
        return verify_package(io.BytesIO(rewrite(e.zip, reseal=e.signer, **change)), e.key).problems

    # The SM3 a phone signed: the manifest may not say otherwise, and the file is held to it too.
    where = f"evidence {e.items[e.ids['sm3']]['item']} ({e.ids['sm3']})"
    found = problems(manifest=_set_item(e, "sm3", "sm3", fake))
    assert f"{where}: sm3 {fake!r} differs from the signed declaration ({sm3(e.files['sm3'])!r})" in found
    assert any(p.startswith(f"{where}: file ") and f"has SM3 {sm3(e.files['sm3'])}, not the declared {fake}" in p
               for p in found), found

    # An SM3 listed for a SHA-256 phone's item (which the server does not list): the file is re-hashed against it.
    where = f"evidence {e.items[e.ids['sha256']]['item']} ({e.ids['sha256']})"
    found = problems(manifest=_set_item(e, "sha256", "sm3", fake))
    assert [p for p in found if p.startswith(where)] == [
        f"{where}: file {e.items[e.ids['sha256']]['file']} has SM3 {sm3(e.files['sha256'])}, not the declared "
        f"{fake}: the file was altered"], found

    # A changed file of an item with SM3: both hashes name it.
    where = f"evidence {e.items[e.ids['sm3']]['item']} ({e.ids['sm3']})"
    found = [p for p in problems(files=_flip_file(e, "sm3")) if p.startswith(where)]
    assert any("has SHA-256" in p for p in found) and any("has SM3" in p for p in found), found

    # An item without SM3 is checked as before: SHA-256 only.
    where = f"evidence {e.items[e.ids['legacy']]['item']} ({e.ids['legacy']})"
    found = [p for p in problems(files=_flip_file(e, "legacy")) if p.startswith(where)]
    assert len(found) == 1 and "has SHA-256" in found[0], found

    # The declared custody event names the SM3 signed: a manifest whose item drops it is named there too.
    where = f"evidence {e.items[e.ids['never']]['item']} ({e.ids['never']})"
    found = problems(manifest=_set_item(e, "never", "sm3", fake))
    assert f"{where}: its custody 'declared' event records another hash or size" in found, found


# --------------------------------------------------------------------------- the whole-system audit


def test_given_sm3_only_items_when_fieldcase_verify_runs_then_all_is_consistent_and_an_edited_sm3_is_named(
        app, client, officers, settings, db):
    hand = Hand(app, officers)
    data = os.urandom(25_000)
    eid, _ = hand.declare(data, ("sm3",))
    never, _ = hand.declare(os.urandom(10), ("sm3",))
    assert hand.upload(eid, data)["status"] == "verified"
    code, report = verify(settings)
    assert code == 0, report["problems"]

    with db.engine.begin() as conn:
        conn.execute(update(Evidence).where(Evidence.id.in_([eid, never])).values(sm3="cd" * 32))
    code, report = verify(settings)
    assert code == 1
    for ident in (eid, never):
        messages = [p["message"] for p in named(report, "evidence", "evidence", ident)]
        assert any("sm3 differs from what its signed evidence.capture" in m for m in messages), report["problems"]
        assert any("declared custody event" in m for m in messages), messages
    assert any("does not hash to its SM3" in m for m in
               [p["message"] for p in named(report, "evidence", "evidence", eid)])
    with db.session() as s:
        assert s.scalar(select(Upload.received_sm3).where(Upload.evidence_id == eid)) == sm3(data)
