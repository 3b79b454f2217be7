"""Evidence packages: built from a real case, downloaded, verified offline, and every kind of tampering caught."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from backend.cli import main
from backend.core.crypto import SM
from media import package as packages
from media.custody import heads
from media.custody.keys import Signer
from media.package_index import INDEX_NAME, sign
from media.package_verify import verify_package
from tests.conftest import Officers, app_on
from tests.phones import TestPhone

PURPOSE = "移送法制审核"
INSTITUTION = {"name": "星光艺术培训中心", "region": "330106"}


def upload(phone: TestPhone, eid: str, data: bytes) -> None:
    plan = phone.client.post(f"/api/v1/evidence/{eid}/uploads", headers=phone.headers).json
    path = plan["url"].split("localhost", 1)[1]
    assert phone.client.put(path, data=data, headers=phone.headers).status_code == 200
    r = phone.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=phone.headers)
    assert r.json["status"] == "verified", r.json


class Built:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


@pytest.fixture(scope="module")
def built(module_settings) -> Built:
    """The package built once for the tests that only take it apart offline: its server is gone when they run."""
    with app_on(module_settings) as app:
        client = app.test_client()
        package = build(app, client, Officers(app.extensions["fieldcase"].db, client))
    package.client = package.officers = None
    return package


@pytest.fixture
def served(app, client, officers) -> Built:
    """The case on a running server, for the tests that ask that server more."""
    return build(app, client, officers)


def build(app, client, officers) -> Built:
    """Two phones on one inspection, an unrelated record in between, two uploads, one item never uploaded, a read."""
    a, b = officers.make(), officers.make()
    custodian = officers.make(roles=("custodian",))
    ha, hb, hc = officers.headers(a), officers.headers(b), officers.headers(custodian)
    pa, pb = TestPhone(client, a, ha, "phone A"), TestPhone(client, b, hb, "phone B")

    cid, opened = pa.open_case(INSTITUTION)
    iid, started = pa.start(cid, [a.id, b.id])
    finding = pa.finding(iid)
    e1, cap1 = pa.evidence(iid, b"photo one \xff\xd8 bytes")
    _, unrelated = pa.open_case({"name": "另一家机构", "region": "330106"})
    e2, cap2 = pa.evidence(iid, b"never uploaded")
    ended = pa.end(iid)
    results = pa.push([opened, started, finding, cap1, unrelated, cap2, ended])["results"]
    assert all(r["status"] == "applied" for r in results), results
    case_id = results[0]["refs"]["case_id"]

    _, other = pb.open_case({"name": "第三家机构", "region": "330106"})
    e3, cap3 = pb.evidence(iid, b"video clip bytes" * 1000)
    assert [r["status"] for r in pb.push([other, cap3])["results"]] == ["applied", "applied"]

    upload(pa, e1, b"photo one \xff\xd8 bytes")
    upload(pb, e3, b"video clip bytes" * 1000)
    assert client.get(f"/api/v1/evidence/{e1}/content", query_string={"purpose": "审查"},
                      headers=hc).status_code == 200

    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE}, headers=hc)
    assert r.status_code == 200, r.data[:500]
    assert r.mimetype == "application/zip"
    assert r.headers["Content-Disposition"].startswith(f'attachment; filename="case-{case_id}-')
    key = client.get("/api/v1/custody/public-key").json["public_key"]
    return Built(client=client, officers=officers, case_id=case_id, zip=r.data, package_id=r.headers["X-Package-Id"],
                 key=key, a=a, b=b, custodian=custodian, hc=hc, pa=pa, pb=pb, e1=e1, e2=e2, e3=e3,
                 signer=app.extensions["fieldcase"].signer)


def cli(tmp_path, data: bytes, *args: str):
    path = tmp_path / "package.zip"
    path.write_bytes(data)
    return CliRunner().invoke(main, ["verify-package", str(path), *args])


def test_a_downloaded_package_verifies_offline(built, tmp_path):
    result = cli(tmp_path, built.zip, "--public-key", built.key)
    assert result.exit_code == 0, result.output
    assert "checked against the key given on the command line" in result.output
    assert result.output.rstrip().endswith(": OK")

    bare = cli(tmp_path, built.zip)
    assert bare.exit_code == 0, bare.output
    assert "WARNING" in bare.output and "self-consistent" in bare.output


def test_the_manifest_holds_the_case_and_hides_unrelated_records(built):
    zf = zipfile.ZipFile(io.BytesIO(built.zip))
    m = json.loads(zf.read("manifest.json"))
    assert m["case"]["id"] == built.case_id and m["package"]["purpose"] == PURPOSE
    assert len(m["inspections"]) == 1 and len(m["findings"]) == 1
    types = sorted(r["type"] for r in m["records"])
    assert types == sorted(["case.open", "inspection.start", "inspection.finding", "evidence.capture",
                            "evidence.capture", "inspection.end", "evidence.capture"])
    devices = m["devices"]
    assert set(devices) == {built.pa.device_id, built.pb.device_id}
    a = devices[built.pa.device_id]
    assert (a["first_seq"], a["last_seq"]) == (1, 7) and [o["seq"] for o in a["other_records"]] == [5]
    assert "另一家机构" not in json.dumps(m, ensure_ascii=False)  # only its hash is revealed
    assert devices[built.pb.device_id]["first_seq"] == 2  # phone B's own case is outside the range

    items = {i["id"]: i for i in m["evidence"]}
    assert items[built.e2]["file"] is None and items[built.e2]["status"] == "declared"
    assert items[built.e1]["file"].startswith("files/") and items[built.e1]["custody_holder"] == built.a.id
    assert zf.read(items[built.e3]["file"]) == b"video clip bytes" * 1000
    actions = [json.loads(e["leaf"])["action"] for e in items[built.e1]["custody_events"]]
    assert actions == ["declared", "upload_started", "verified", "read", "exported"]
    assert m["custody"]["public_key"] == built.key

    rows = list(csv.reader(io.StringIO(zf.read("evidence-list.csv").decode("utf-8-sig"))))
    assert rows[0][0] == "序号 Item" and len(rows) == 4
    assert {r[3] for r in rows[1:]} == {i["sha256"] for i in m["evidence"]}
    page = zf.read("evidence-list.html").decode()
    assert "电子数据清单" in page and items[built.e3]["sha256"] in page


def test_the_export_is_in_each_items_custody_log(served):
    for eid in (served.e1, served.e2, served.e3):
        events = served.client.get(f"/api/v1/evidence/{eid}/custody", headers=served.hc).json["events"]
        exported = [e for e in events if e["action"] == "exported"]
        assert len(exported) == 1
        assert exported[0]["purpose"] == PURPOSE and exported[0]["package"] == served.package_id
        assert exported[0]["actor"] == served.custodian.id


def rewrite(data: bytes, manifest: Callable[[dict], None] | None = None,
            files: Callable[[dict[str, bytes]], None] | None = None, *, reseal: Signer | None = None) -> bytes:
    """A copy of the package with its manifest and/or entries changed. With `reseal`, its index is made again for
    the changed members and signed with that (the server's) key: what only someone holding the custody key could
    do, and what a test of one of the other checks needs, so that the seal does not answer first. An index sealed in
    SM2 too is resealed in SM2 with that signer's SM2 key, its members with their SM3."""
    src = zipfile.ZipFile(io.BytesIO(data))
    entries = {n: src.read(n) for n in src.namelist()}
    if manifest:
        m = json.loads(entries["manifest.json"])
        manifest(m)
        entries["manifest.json"] = json.dumps(m, ensure_ascii=False).encode()
    if files:
        files(entries)
    if reseal is not None:
        index = json.loads(entries[INDEX_NAME])
        sm = reseal.sm if "sm_signature" in index else None
        index["members"] = sorted(({"name": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b),
                                    **({"sm3": SM.hexdigest(b)} if sm else {})}
                                   for n, b in entries.items() if n != INDEX_NAME), key=lambda e: e["name"])
        entries[INDEX_NAME] = json.dumps(sign(reseal, index, sm)).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alter_record(m: dict) -> None:
    rec = next(r for r in m["records"] if r["type"] == "inspection.finding")
    head, payload, sig = rec["jws"].split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["body"]["description"] = "没有发现问题"
    rec["jws"] = f"{head}.{_b64(json.dumps(body, ensure_ascii=False).encode())}.{sig}"
    rec["hash"] = hashlib.sha256(rec["jws"].encode()).hexdigest()  # even with the hash fixed up


def _flip_byte(entries: dict[str, bytes]) -> None:
    name = next(n for n in entries if n.startswith("files/"))
    data = bytearray(entries[name])
    data[3] ^= 0x01
    entries[name] = bytes(data)


def _alter_proof(m: dict) -> None:
    proof = m["evidence"][0]["custody_events"][1]["proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]


def _remove_record(m: dict) -> None:
    m["records"] = [r for r in m["records"] if r["type"] != "inspection.finding"]


def _remove_file(entries: dict[str, bytes]) -> None:
    del entries[next(n for n in entries if n.startswith("files/"))]


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        target = m
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return change


def _declared_size(m: dict) -> None:
    item = next(i for i in m["evidence"] if i["file"])
    item["size"] += 1


@pytest.mark.parametrize("manifest, files, says", [
    (None, _flip_byte, "the file was altered"),
    (_alter_record, None, "signature check failed (bad signature): the record is not as the device signed it"),
    (_alter_proof, None, "inclusion proof does not hold against the tree head"),
    (_set(("custody", "tree_head", "root_hash"), "ab" * 32), None, "its signature does not verify with the given key"),
    (_set(("custody", "tree_head", "signature"), _b64(bytes(64))), None, "its signature does not verify"),
    (_remove_record, None, "record seq 3 is missing from the chain"),
    (None, _remove_file, "is missing from the package"),
    (_declared_size, None, "differs from the signed declaration"),
], ids=["file-byte", "record", "proof", "head-root", "head-signature", "removed-record", "removed-file",
        "manifest-size"])
def test_tampering_is_caught(built, tmp_path, manifest, files, says):
    result = cli(tmp_path, rewrite(built.zip, manifest, files), "--public-key", built.key)
    assert result.exit_code == 1, result.output
    assert says in result.output
    assert "PROBLEM" in result.output and "problem(s)" in result.output


def test_a_changed_root_also_breaks_every_proof(built):
    report = verify_package(io.BytesIO(rewrite(built.zip, _set(("custody", "tree_head", "root_hash"), "ab" * 32))),
                            built.key)
    # every custody event's proof, and every device's head leaf (proven against the same root)
    assert sum("inclusion proof does not hold" in p for p in report.problems) == report.events + report.devices


def test_the_wrong_public_key_is_refused(built, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = _b64(Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    result = cli(tmp_path, built.zip, "--public-key", other)
    assert result.exit_code == 1
    assert "its signature does not verify with the given key" in result.output
    assert "names another custody key" in result.output
    garbage = cli(tmp_path, built.zip, "--public-key", "not-a-key")
    assert garbage.exit_code == 1 and "not a base64url Ed25519 key" in garbage.output


def test_not_a_package(tmp_path):
    assert "not a readable ZIP" in cli(tmp_path, b"hello").output
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert "manifest.json is missing" in cli(tmp_path, empty.getvalue()).output


def test_roles_and_jurisdiction(served):
    client, officers = served.client, served.officers
    url = f"/api/v1/cases/{served.case_id}/package"
    assert client.get(url, query_string={"purpose": PURPOSE}, headers=served.pa.headers).status_code == 403
    far = officers.make(region="330105", roles=("reviewer",))
    r = client.get(url, query_string={"purpose": PURPOSE}, headers=officers.headers(far))
    assert r.status_code == 404 and r.json["code"] == 404
    for role in ("reviewer", "legal_reviewer", "admin"):
        who = officers.make(roles=(role,))
        assert client.get(url, query_string={"purpose": "复核"}, headers=officers.headers(who)).status_code == 200
    city = officers.make(region="330100", roles=("custodian",))
    assert client.get(url, query_string={"purpose": "复核"}, headers=officers.headers(city)).status_code == 200
    assert client.get(url, headers=served.hc).status_code == 422  # a purpose is required
    assert client.get(url, query_string={"purpose": PURPOSE}).status_code == 401


def test_write_package_streams_into_a_non_seekable_file(served, app):
    class Sink:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.parts.append(data)
            return len(data)

    st = app.extensions["fieldcase"]
    sink = Sink()
    with st.db.session() as s:
        from backend.core.models import Officer

        viewer = s.get(Officer, served.custodian.id)
        at = st.clock()
        export = packages.record_export(s, viewer, served.case_id, purpose="归档", now=at)
        s.commit()
        head = heads.latest_head(s, st.signer, now=at)
        s.commit()
        package = packages.prepare_package(s, st.signer, viewer, export, head)
        package.write(st.store, sink)  # type: ignore[arg-type]
    report = verify_package(io.BytesIO(b"".join(sink.parts)), served.key)
    assert report.ok, report.problems
    assert report.records == 7 and report.items == 3 and report.files == 2
    assert package.id != served.package_id


# --- strict verifying (PROTOCOL "Evidence packages, as built", "Custody log, as built") ------------------------
# One spelling for every base64url, 32-byte hashes as 64 lower-case hex digits, proofs of exactly the RFC's
# shape, record alg EdDSA or Ed25519: anything else is a named PROBLEM, and the rest is still checked.

B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _lenient(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _another_spelling(text: str) -> str:
    """The same bytes with the unused low bits of the last character set: a lenient decoder reads no difference."""
    unused = {2: 0b1111, 3: 0b11}[len(text) % 4]
    other = text[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(text[-1]) | unused]
    assert other != text and _lenient(other) == _lenient(text)
    return other


def _last_record_of_phone_a(m: dict, built: Built) -> dict:
    """Phone A's inspection.end (seq 7): the end of its chain and declares nothing, so changing it changes nothing
    else but the record the custody log witnessed as the device's head (`head_changed` says so)."""
    rec = max((r for r in m["records"] if r["device"] == built.pa.device_id), key=lambda r: r["seq"])
    assert (rec["seq"], rec["type"]) == (7, "inspection.end")
    return rec


def head_changed(built: Built) -> str:
    """What the verifier says when phone A's last record is not the one the custody log saw end its chain."""
    return (f"device {built.pa.device_id}: the record at seq 7 is not the one the custody log witnessed as its head "
            "(another record, or none)")


def end_unsigned(built: Built) -> str:
    """What the verifier says of the inspection when phone A's last record (its inspection.end) is refused."""
    (inspection,) = _manifest(built)["inspections"]
    return (f"inspection {inspection['id']}: listed as ended, but no inspection.end record whose signature holds is "
            "in the package")


def _replace_jws(rec: dict, text: str) -> None:
    rec["jws"], rec["hash"] = text, hashlib.sha256(text.encode()).hexdigest()


def _signed(built: Built, header: str, payload: str) -> str:
    return f"{header}.{payload}.{_b64(built.pa.key.sign(f'{header}.{payload}'.encode()))}"


def _verified(built: Built, change: Callable[[dict], None], key: str | None = "built") -> Any:
    """The package with its manifest changed and sealed again by the server's key: what the other checks find."""
    return verify_package(io.BytesIO(rewrite(built.zip, change, reseal=built.signer)),
                          built.key if key == "built" else key)


def _manifest(built: Built) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(built.zip)).read("manifest.json"))


def report_size(built: Built) -> int:
    return _manifest(built)["custody"]["tree_head"]["tree_size"]


def events(built: Built) -> int:
    manifest = _manifest(built)
    return sum(len(item["custody_events"]) for item in manifest["evidence"]) + len(manifest["case"]["custody_events"])


def test_given_a_record_whose_signature_is_spelled_another_way_when_verified_then_the_record_is_refused(built):
    """The same 64 signature bytes, spelled so that a lenient decoder reads them alike: one record would then
    have several texts and hashes that all verify."""
    where = f"record {built.pa.device_id}#7"

    def spelled(how: Callable[[str], str]) -> Callable[[dict], None]:
        def change(m: dict) -> None:
            rec = _last_record_of_phone_a(m, built)
            head, payload, signature = rec["jws"].split(".")
            _replace_jws(rec, f"{head}.{payload}.{how(signature)}")
        return change

    for how, why in [
        (_another_spelling, "its signature is not canonical base64url (the unused bits of its last character are "
                            "not zero)"),
        (lambda s: s + "==", "its signature is not base64url (only A-Z a-z 0-9 - _, no padding)"),
        (lambda s: s.translate(str.maketrans("-_", "+/")) + ("" if "-" in s or "_" in s else "+"),
         "its signature is not base64url (only A-Z a-z 0-9 - _, no padding)"),
    ]:
        report = _verified(built, spelled(how))
        assert report.problems == [f"{where}: refused, {why}: it is not a record JWS as the protocol spells one, "
                                   "so its signature was not checked", head_changed(built), end_unsigned(built)], \
            report.problems
    assert _verified(built, spelled(lambda s: s)).ok


def test_given_a_record_signed_over_a_header_or_payload_spelled_another_way_when_verified_then_it_is_refused(built):
    """The device's own key signed the odd spelling: the server refuses such a record (`malformed`), so a package
    holding one was not made from the server's ledger."""
    def resigned(part: str) -> Callable[[dict], None]:
        def change(m: dict) -> None:
            rec = _last_record_of_phone_a(m, built)
            head, payload, _ = rec["jws"].split(".")
            segments = {"header": head, "payload": payload}
            raw = _lenient(segments[part])
            while len(raw) % 3 == 0:  # JSON whitespace until the last character has unused bits
                raw = raw[:-1] + b" }"
            segments[part] = _another_spelling(_b64(raw))
            _replace_jws(rec, _signed(built, segments["header"], segments["payload"]))
        return change

    for part in ("header", "payload"):
        report = _verified(built, resigned(part))
        assert report.problems == [
            f"record {built.pa.device_id}#7: refused, its {part} is not canonical base64url (the unused bits of its "
            "last character are not zero): it is not a record JWS as the protocol spells one, so its signature was "
            "not checked", head_changed(built), end_unsigned(built)], report.problems


def test_given_a_record_signed_with_alg_ed25519_when_verified_then_it_holds_and_no_other_alg_does(built):
    """RFC 9864's `Ed25519` is the fully specified name of the one signature `EdDSA` means here."""
    def alg(value: Any) -> Callable[[dict], None]:
        def change(m: dict) -> None:
            rec = _last_record_of_phone_a(m, built)
            header = json.loads(_lenient(rec["jws"].split(".")[0]))
            assert header["alg"] == "EdDSA"
            _replace_jws(rec, _signed(built, _b64(json.dumps({**header, "alg": value}).encode()),
                                      rec["jws"].split(".")[1]))
        return change

    report = _verified(built, alg("Ed25519"))
    assert report.problems == [head_changed(built)], report.problems  # the record holds; the server ledgered another
    for value in ("ed25519", "Ed25519 ", "ES256", "none", None, ["EdDSA"]):
        report = _verified(built, alg(value))
        assert report.problems == [
            f"record {built.pa.device_id}#7: refused, header alg is {value!r}, not EdDSA or Ed25519: it is not a "
            "record JWS as the protocol spells one, so its signature was not checked", head_changed(built),
            end_unsigned(built)], report.problems


def _proof_of(m: dict, built: Built) -> dict:
    """The custody event of item e1 whose audit path is longest (so it has hashes to change)."""
    item = next(i for i in m["evidence"] if i["id"] == built.e1)
    return max(item["custody_events"], key=lambda e: len(e["proof"]))


def test_given_a_custody_proof_hash_that_is_not_64_lower_case_hex_when_verified_then_the_event_is_refused(built):
    def first_hash(value: Any) -> Callable[[dict], None]:
        def change(m: dict) -> None:
            _proof_of(m, built)["proof"][0] = value
        return change

    def original(m: dict) -> str:
        return _proof_of(m, built)["proof"][0]

    real = original(_manifest(built))
    for value, why in [
        ("", "proof hash 0 is empty"),
        (real[:62], "proof hash 0 has 62 characters, not the 64 hex digits of a 32-byte hash"),
        (real + "00", "proof hash 0 has 66 characters, not the 64 hex digits of a 32-byte hash"),
        ("zz" + real[2:], "proof hash 0 is not lower-case hex"),
        (real.upper() if real.upper() != real else "A" + real[1:], "proof hash 0 is not lower-case hex"),
        (f" {real[1:]}", "proof hash 0 is not lower-case hex"),  # bytes.fromhex would skip the blank
        (7, "proof hash 0 is not a hex string"),
    ]:
        report = _verified(built, first_hash(value))
        (problem,) = report.problems
        assert f" ({built.e1}): custody event at leaf " in problem, problem
        assert problem.endswith(f"refused, {why}: its inclusion proof does not hold against the tree head (size "
                                f"{report_size(built)})"), problem
        assert report.events == events(built)  # every other event was still checked


def test_given_an_inclusion_proof_of_the_wrong_length_or_outside_the_tree_when_verified_then_it_is_refused(built):
    size = report_size(built)

    def event(**changes: Any) -> Callable[[dict], None]:
        def change(m: dict) -> None:
            target = _proof_of(m, built)
            for name, value in changes.items():
                target[name] = value(target[name]) if callable(value) else value
        return change

    cases = [
        (event(proof=lambda p: [*p, p[0]]), "the proof has {n1} hashes; leaf {i} of a tree of {size} needs {n}"),
        (event(proof=lambda p: p[:-1]), "the proof has {n0}; leaf {i} of a tree of {size} needs {n}"),
        (event(leaf_index=size), f"leaf index {size} is not in a tree of {size} leaves (leaf_index >= tree_size)"),
        (event(leaf_index=size + 5), f"leaf index {size + 5} is not in a tree of {size} leaves"),
    ]
    target = _proof_of(_manifest(built), built)
    n, i = len(target["proof"]), target["leaf_index"]
    assert n >= 2
    for change, why in cases:
        expected = why.format(n=n, n1=n + 1, n0=f"{n - 1} hash" if n == 2 else f"{n - 1} hashes", i=i, size=size)
        (problem,) = _verified(built, change).problems
        assert "its inclusion proof does not hold against the tree head" in problem and expected in problem, problem
    for index in (True, -1, "3"):
        (problem,) = _verified(built, event(leaf_index=index)).problems
        assert problem.endswith("refused, its leaf_index is not a non-negative integer"), problem


def test_given_a_tree_head_whose_root_hash_is_not_a_32_byte_hash_when_verified_then_it_is_refused(built):
    size = report_size(built)
    for value, why in [("", "its root_hash is empty"),
                       ("ab" * 31, "its root_hash has 62 characters, not the 64 hex digits of a 32-byte hash"),
                       ("AB" * 32, "its root_hash is not lower-case hex"),
                       (None, "its root_hash is not a hex string")]:
        report = _verified(built, _set(("custody", "tree_head", "root_hash"), value))
        assert report.problems[0] == (f"tree head (size {size}): refused, {why}, so no custody event can be proven "
                                      "against it"), report.problems
        assert not any("malformed" in p for p in report.problems), report.problems
    report = _verified(built, _set(("custody", "tree_head", "tree_size"), True))
    assert report.problems[0].startswith("tree head: its tree_size True is not a non-negative integer")


def test_given_keys_or_a_head_signature_spelled_another_way_when_verified_then_they_are_refused(built):
    device = built.pa.device_id
    report = _verified(built, lambda m: m["devices"][device].update(
        public_key=_another_spelling(m["devices"][device]["public_key"])))
    assert report.problems[0] == (f"device {device}: its public key is not a valid Ed25519 key (not canonical "
                                  "base64url (the unused bits of its last character are not zero))"), report.problems

    report = _verified(built, lambda m: m["custody"].update(public_key=_another_spelling(m["custody"]["public_key"])),
                       key=None)
    assert report.problems == ["the custody public key in the package is not a valid Ed25519 key (not canonical "
                               "base64url (the unused bits of its last character are not zero))"]

    def head_signature(how: Callable[[str], str]) -> Callable[[dict], None]:
        return lambda m: m["custody"]["tree_head"].update(signature=how(m["custody"]["tree_head"]["signature"]))

    size = report_size(built)
    for how, why in [(_another_spelling, "not canonical base64url (the unused bits of its last character are not "
                                         "zero)"),
                     (lambda s: s + "==", "not base64url (only A-Z a-z 0-9 - _, no padding)"),
                     (lambda s: s[:-2], "63 bytes, not the 64 of Ed25519")]:
        assert _verified(built, head_signature(how)).problems == [
            f"tree head (size {size}): refused, its signature is {why}, so it was not checked"]


IDENTITY = bytes([1]) + bytes(31)  # the Ed25519 identity point, a point of small order
FORGED = _b64(IDENTITY + bytes(32))  # R = identity, s = 0: OpenSSL finds it a valid signature of any message under it


class Forger:
    """Whoever made a package carrying the identity point as its custody key: it "signs" anything."""

    def sign(self, data: bytes) -> str:
        return FORGED


def test_given_a_package_whose_custody_key_is_of_small_order_when_verified_then_the_key_is_refused(built):
    def forge(m: dict) -> None:
        m["custody"].update(public_key=_b64(IDENTITY), key_id=hashlib.sha256(IDENTITY).hexdigest()[:16])
        m["custody"]["tree_head"]["signature"] = FORGED

    forged = rewrite(built.zip, forge, reseal=Forger())  # type: ignore[arg-type]
    report = verify_package(io.BytesIO(forged), None)
    assert not report.ok
    assert report.problems == ["the custody public key in the package is not a valid Ed25519 key (the public key is "
                               "not a valid Ed25519 point)"], report.problems
    given = verify_package(io.BytesIO(forged), _b64(IDENTITY))
    assert given.problems == ["the public key given on the command line is not a base64url Ed25519 key (the public "
                              "key is not a valid Ed25519 point)"], given.problems


def test_given_a_device_key_of_small_order_when_verified_then_the_device_is_named_not_each_record(built):
    device = built.pa.device_id
    report = _verified(built, lambda m: m["devices"][device].update(public_key=_b64(IDENTITY)))
    assert report.problems[0] == (f"device {device}: its public key is not a valid Ed25519 key (the public key is "
                                  "not a valid Ed25519 point)"), report.problems
    assert not any("signature check failed" in p for p in report.problems), report.problems


def test_given_the_custody_key_typed_on_the_command_line_when_verified_then_only_its_bits_must_be_canonical(
        built, tmp_path):
    """A person may paste standard base64, padded, with blanks; the bits the key's last character does not use must
    still be zero, so no second spelling of a key is accepted."""
    standard = base64.b64encode(_lenient(built.key)).decode()
    result = cli(tmp_path, built.zip, "--public-key", f" {standard}\n")
    assert result.exit_code == 0, result.output
    assert "names another custody key" not in result.output
    odd = cli(tmp_path, built.zip, "--public-key", _another_spelling(built.key))
    assert odd.exit_code == 1
    assert ("PROBLEM the public key given on the command line is not a base64url Ed25519 key (not canonical "
            "base64url (the unused bits of its last character are not zero))") in odd.output
