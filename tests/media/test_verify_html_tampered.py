"""verify.html fails every kind of tampering, as `verify-package` does (PROTOCOL "Evidence packages, as built").

Given a package of a real case, when it is tampered with (a member edited, added, removed or renamed; a fact of the
manifest edited and the package resealed by an insider holding the custody key; a record moved out, cut from a
chain or with a broken signature; a file's byte flipped; the head's signature, an inclusion proof, the index's
signature or the timestamp token forged; the wrong custody key entered) and a clerk picks it in verify.html, then
`#verdict` says `fail`, the problem naming the thing changed is shown in Chinese with the English below it, and the
English lines are exactly the problems `verify-package` reports for the same bytes: the two verifiers are one rule.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from media.custody.keys import head_payload
from media.custody.timestamps import encode_token, request_for, token_from_reply
from media.package_index import INDEX_NAME
from tests.media.test_package import (
    _alter_proof,
    _alter_record,
    _another_spelling,
    _b64,
    _flip_byte,
    _set,
    rewrite,
)
from tests.media.verify_page import Base, base, driver, in_python, open_and_pick, shot
from tests.tsa import misspelt

__all__ = ["base", "driver"]  # the fixtures: the module's packages, and the browser


def _other_key() -> str:
    return _b64(Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _members(change: Callable[[dict[str, bytes]], None]) -> Callable[[Base], bytes]:
    return lambda base: rewrite(base.zip, files=change)


def _manifest(change: Callable[[Base, dict], None], *, reseal: bool = False) -> Callable[[Base], bytes]:
    """The manifest changed; resealed with the server's custody key when the seal must not answer first (what only
    an insider holding that key could do)."""
    return lambda base: rewrite(base.zip, lambda m: change(base, m), reseal=base.signer if reseal else None)


def _rename_file(entries: dict[str, bytes]) -> None:
    old = next(n for n in entries if n.startswith("files/"))
    entries[old.replace("files/", "files/renamed_")] = entries.pop(old)


def _forge_index(entries: dict[str, bytes]) -> None:
    index = json.loads(entries[INDEX_NAME])
    index["members"] = [m for m in index["members"] if m["name"] != "evidence-list.csv"]
    entries.pop("evidence-list.csv")
    entries[INDEX_NAME] = json.dumps(index).encode()


def _flip_in_place(base: Base) -> bytes:
    """A byte of a stored file changed inside the ZIP itself: the archive's CRC no longer holds."""
    info = next(i for i in zipfile.ZipFile(io.BytesIO(base.zip)).infolist() if i.filename.startswith("files/"))
    data = bytearray(base.zip)
    header = info.header_offset
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], "little") + int.from_bytes(
        data[header + 28:header + 30], "little")
    data[start + 3] ^= 0x01
    return bytes(data)


def _hide_finding_record(_: Base, m: dict) -> None:
    rec = next(r for r in m["records"] if r["type"] == "inspection.finding")
    m["records"].remove(rec)
    m["devices"][rec["device"]]["other_records"].append({"seq": rec["seq"], "hash": rec["hash"]})


def _drop_last_record(base: Base, m: dict) -> None:
    m["records"] = [r for r in m["records"] if not (r["device"] == base.phone_a and r["seq"] == 7)]
    m["devices"][base.phone_a]["last_seq"] = 6


def _respell_signature(base: Base, m: dict) -> None:
    """The last record of phone A with the same signature bytes spelled so a lenient decoder reads no difference."""
    rec = max((r for r in m["records"] if r["device"] == base.phone_a), key=lambda r: r["seq"])
    head, payload, signature = rec["jws"].split(".")
    rec["jws"] = f"{head}.{payload}.{_another_spelling(signature)}"
    rec["hash"] = hashlib.sha256(rec["jws"].encode()).hexdigest()


def _upper_proof(_: Base, m: dict) -> None:
    event = max(m["evidence"][0]["custody_events"], key=lambda e: len(e["proof"]))
    event["proof"][0] = event["proof"][0].upper()


def _stamp_of_another_head(tsa) -> Callable[[Base, dict], None]:
    def change(_: Base, m: dict) -> None:
        head = m["custody"]["tree_head"]
        other = head_payload(head["tree_size"] - 1, head["root_hash"], head["timestamp"])
        query, nonce = request_for(other)
        token, _ = token_from_reply(tsa.reply(query), nonce, other)
        head["timestamp_token"] = encode_token(token)
    return change


TAMPERED = {
    "csv-edited": (_members(lambda e: e.update({"evidence-list.csv": e["evidence-list.csv"] + b"1,forged\r\n"})),
                   "member evidence-list.csv: not the member the index sealed", "成员 evidence-list.csv"),
    "member-added": (_members(lambda e: e.update({"files/9999_extra.jpg": b"planted"})),
                     "member files/9999_extra.jpg: not in the signed index (added to the package, or renamed)",
                     "不在已签名的索引中"),
    "member-removed": (_members(lambda e: e.pop("evidence-list.pdf")),
                       "member evidence-list.pdf: in the signed index but not in the package (removed, or renamed)",
                       "不在证据包中"),
    "member-renamed": (_members(_rename_file), "files/renamed_", "被改名"),
    "page-edited": (_members(lambda e: e.update({"verify.html": e["verify.html"].replace(b"fail", b"ok")})),
                    "member verify.html: not the member the index sealed", "成员 verify.html"),
    "finding-description": (_manifest(lambda _, m: m["findings"][0].update(description="现场未发现问题"), reseal=True),
                            "description '现场未发现问题' differs from the signed record", "与已签名的记录"),
    "inspection-outcome": (_manifest(lambda _, m: m["inspections"][0].update(outcome="no_violation"), reseal=True),
                           "outcome 'no_violation' differs from the signed record", "与已签名的记录"),
    "record-moved-out": (_manifest(_hide_finding_record, reseal=True),
                         "no inspection.finding record whose signature holds is in the package", "没有签名有效的"),
    "last-record-dropped": (_manifest(_drop_last_record),
                            "its chain is listed to seq 6, but the custody log witnessed it end at seq 7", "截掉"),
    "record-signature": (_manifest(lambda _, m: _alter_record(m)),
                         "signature check failed (bad signature): the record is not as the device signed it",
                         "签名核验失败"),
    "file-byte": (_members(_flip_byte), "the file was altered", "文件被改动过"),
    "file-byte-in-zip": (_flip_in_place, "is damaged (Bad CRC-32 for file 'files/", "已损坏"),
    "head-signature": (_manifest(lambda _, m: _set(("custody", "tree_head", "signature"), _b64(bytes(64)))(m)),
                       "its signature does not verify with the given key", "树头"),
    "inclusion-proof": (_manifest(lambda _, m: _alter_proof(m)),
                        "its inclusion proof does not hold against the tree head", "包含证明"),
    "proof-spelling": (_manifest(_upper_proof, reseal=True), "proof hash 0 is not lower-case hex", "不是小写十六进制"),
    "index-forged": (_members(_forge_index), f"{INDEX_NAME}: its signature does not verify with the custody key",
                     "其签名不能用监管公钥验证通过"),
    "manifest-malformed": (_manifest(lambda _, m: m.pop("devices"), reseal=True),
                           "the manifest is malformed (KeyError: 'devices')", "清单格式有误"),
    "not-a-zip": (lambda _: b"hello, not a package", "not a readable ZIP file: File is not a zip file",
                  "不是可读的 ZIP"),
    "case-status": (_manifest(lambda _, m: m["case"].update(status="closed"), reseal=True),
                    "case: status 'closed' is not the value the custody log bound at leaf", "监管日志"),
    "custody-holder": (_manifest(lambda _, m: m["evidence"][0].update(custody_holder="ofc_nobody"), reseal=True),
                       "custody_holder 'ofc_nobody' is not the holder its proven custody events name", "保管人"),
    "export-purpose": (_manifest(lambda _, m: m["package"].update(purpose="另作他用"), reseal=True),
                       "the package's purpose '另作他用' differs from the one its 'exported' custody event records",
                       "用途"),
    "institution-name": (_manifest(lambda _, m: m["case"]["institution"].update(name="月光艺术培训中心"), reseal=True),
                         "institution.name '月光艺术培训中心' differs from the signed record ('星光艺术培训中心')",
                         "案件别名"),
    "device-head-removed": (_manifest(lambda base, m: m["devices"][base.phone_a].pop("head")),
                            "no custody leaf witnesses where its chain ends", "终点"),
    "record-hash": (_manifest(lambda _, m: m["records"][0].update(hash="0" * 64), reseal=True),
                    "its JWS does not hash to the listed hash (the record was altered)", "哈希值与所列哈希值不符"),
    "signature-spelling": (_manifest(_respell_signature, reseal=True),
                           "its signature is not canonical base64url (the unused bits of its last character are not "
                           "zero)", "不是规范的 base64url"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_given_a_tampered_package_when_a_clerk_picks_it_then_the_page_fails_it_as_verify_package_does(
        driver, base, kind):
    change, says, chinese = TAMPERED[kind]
    data = change(base)
    seen = open_and_pick(driver, base, data, key=base.key)
    shot(driver, f"tampered-{kind}")
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert any(chinese in p for p in seen.problems_zh), seen.problems_zh
    assert seen.problems == in_python(data, base.key)


def test_given_the_head_stamped_for_another_head_then_the_binding_fails_in_both(driver, base, tsa):
    data = _manifest(_stamp_of_another_head(tsa), reseal=True)(base)
    seen = open_and_pick(driver, base, data, key=base.key)
    assert seen.verdict == "fail"
    size = base.manifest["custody"]["tree_head"]["tree_size"]
    assert seen.problems == [f"tree head (size {size}): its RFC 3161 timestamp does not check: the token imprints "
                             "another message, not this tree head (a token of another head?)"]
    assert seen.problems == in_python(data, base.key)


def _token(change: Callable[[str], str]) -> Callable[[Base, dict], None]:
    return lambda _, m: m["custody"]["tree_head"].update(timestamp_token=change(m["custody"]["tree_head"]
                                                                                 ["timestamp_token"]))


@pytest.mark.parametrize("change, says, exact", [
    (misspelt, "timestamp_token is not standard base64", True),
    (lambda t: base64.b64encode(b"\x30\x03\x02\x01\x01").decode(),
     "the token cannot be read as an RFC 3161 TimeStampToken (", False),
    (lambda t: base64.b64encode(base64.b64decode(t)[:-40]).decode(),
     "the token cannot be read as an RFC 3161 TimeStampToken (", False),
], ids=["unpadded", "not-a-token", "truncated"])
def test_given_a_timestamp_token_that_is_not_one_then_both_refuse_it(driver, base, change, says, exact):
    """The page reads the token with its own few lines of DER: what it cannot read it refuses, as the server's
    check (asn1crypto) does, though not always in the same words."""
    data = _manifest(_token(change), reseal=True)(base)
    seen = open_and_pick(driver, base, data, key=base.key)
    size = base.manifest["custody"]["tree_head"]["tree_size"]
    prefix = f"tree head (size {size}): its RFC 3161 timestamp does not check: {says}"
    assert seen.verdict == "fail" and len(seen.problems) == 1 and seen.problems[0].startswith(prefix), seen.problems
    python = in_python(data, base.key)
    assert len(python) == 1 and python[0].startswith(prefix), python
    assert python == seen.problems or not exact


@pytest.mark.parametrize("entered, says", [
    ("other", "its signature does not verify with the given key"),
    ("not-a-key", "the public key entered on this page is not a base64url Ed25519 key"),
])
def test_given_the_wrong_custody_key_when_the_clerk_enters_it_then_the_package_fails(driver, base, entered, says):
    key = _other_key() if entered == "other" else entered
    seen = open_and_pick(driver, base, base.zip, key=key)
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert seen.problems == in_python(base.zip, key)
    if entered == "other":
        assert any(n.startswith("note: the package names another custody key") for n in seen.notes)
        assert f"{INDEX_NAME}: its signature does not verify with the custody key" in " ".join(seen.problems)
