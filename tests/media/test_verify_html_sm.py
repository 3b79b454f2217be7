"""verify.html in the national algorithms (issue 23, items 2 to 4; PROTOCOL "Evidence packages, as built").

Given a package of a mixed fleet (an SM2 phone whose records are SM2 with SM3 over the pinned user ID and chained by
SM3, whose files are declared by SM3 alone or by both digests, beside an Ed25519 phone) and a package of a server
that keeps the SM custody tree too (FIELDCASE_CUSTODY_SUITES=intl,sm: an SM2-signed head and an SM3 proof of every
leaf the package proves), when a clerk picks them in verify.html in headless Chromium (tests/media/verify_page.py),
then `#verdict` says `ok` exactly where `verify-package` says OK; and when they are tampered with (an SM2 signature's
bit flipped, a record listed by its SHA-256 instead of its SM3, an alg swapped, an SM2 key off the curve, an SM3
edited or a file's byte flipped, the SM head's root, size or signature or an SM3 proof forged, the wrong SM2 key
entered), the page fails them with the English lines `verify-package` reports for the same bytes, each with its
Chinese above.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes

from backend.core.crypto import SM
from media.custody.keys import b64url
from media.package_verify import verify_package
from tests.media.test_package import rewrite
from tests.media.verify_page import National, driver, in_python, national, open_and_pick, shot

__all__ = ["driver", "national"]  # the fixtures: the packages in the national algorithms, and the browser


def sm3(data: bytes) -> str:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def _sm2_record(n: National, m: dict, rtype: str) -> dict:
    return next(r for r in m["records"] if r["device"] == n.sm2_device and r["type"] == rtype)


def _item(n: National, m: dict, declared: tuple[str, ...]) -> dict:
    return next(i for i in m["evidence"] if n.digests[i["id"]] == declared)


# --- the mixed fleet ------------------------------------------------------------------------------------------------


def test_given_a_mixed_fleet_package_when_a_clerk_picks_it_then_the_page_says_ok_as_verify_package_does(
        driver, national):
    n = national
    m = manifest(n.fleet)
    assert (m["devices"][n.sm2_device]["alg"], m["devices"][n.ed_device]["alg"]) == ("SM2SM3", "EdDSA")
    for rec in m["records"]:  # the SM2 phone's records are chained by SM3, the other's by SHA-256
        text = rec["jws"].encode()
        assert rec["hash"] == (sm3(text) if rec["device"] == n.sm2_device else hashlib.sha256(text).hexdigest())
    assert sorted(tuple(sorted(i)) for i in ({k for k in ("sha256", "sm3") if k in item} for item in m["evidence"])) \
        == [("sha256",), ("sha256", "sm3"), ("sha256", "sm3")]
    report = verify_package(io.BytesIO(n.fleet), n.fleet_key)
    assert report.ok and report.files == 3, report.problems

    seen = open_and_pick(driver, n, n.fleet, key=n.fleet_key)
    shot(driver, "sm-01-mixed-fleet-ok")
    assert (seen.verdict, seen.key, seen.problems) == ("ok", "entered", [])
    assert f"{len(m['records'])} records from 2 devices" in seen.summary and "3 files" in seen.summary
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # the vendored library runs under the page's CSP without a complaint


def test_given_the_mixed_fleet_files_hashed_as_they_are_read_then_sha256_and_sm3_agree_with_the_declarations(
        driver, national):
    """At limit 0 every member is hashed by the page's incremental SHA-256 and SM3 (sm3.js), not by Web Crypto and
    the vendored library over a whole buffer: both must still match every declaration and the seal."""
    seen = open_and_pick(driver, national, national.fleet, key=national.fleet_key, stream_above=0)
    assert (seen.verdict, seen.problems) == ("ok", [])


def _fleet(change: Callable[[National, dict], None], *, reseal: bool = True) -> Callable[[National], bytes]:
    """The fleet's manifest changed; resealed with its server's custody key (what only an insider holding it could
    do) so that the seal does not answer first."""
    return lambda n: rewrite(n.fleet, lambda m: change(n, m), reseal=n.fleet_signer if reseal else None)


def _flip_signature_bit(n: National, m: dict) -> None:
    rec = _sm2_record(n, m, "inspection.finding")
    head, payload, signature = rec["jws"].split(".")
    raw = bytearray(b64d(signature))
    raw[5] ^= 0x01  # a bit of r
    rec["jws"] = f"{head}.{payload}.{b64url(bytes(raw))}"
    rec["hash"] = sm3(rec["jws"].encode())  # even with its hash fixed up


def _listed_by_sha256(n: National, m: dict) -> None:
    rec = _sm2_record(n, m, "case.open")
    rec["hash"] = hashlib.sha256(rec["jws"].encode()).hexdigest()


def _record_alg(alg: str) -> Callable[[National, dict], None]:
    """The SM2 phone's finding with its header naming another alg (its signature and payload as signed)."""
    def change(n: National, m: dict) -> None:
        rec = _sm2_record(n, m, "inspection.finding")
        head, payload, signature = rec["jws"].split(".")
        header = json.loads(b64d(head))
        header["alg"] = alg
        rec["jws"] = f"{b64url(json.dumps(header).encode())}.{payload}.{signature}"
        rec["hash"] = sm3(rec["jws"].encode())
    return change


def _device(field: str, value: Callable[[bytes], object]) -> Callable[[National, dict], None]:
    def change(n: National, m: dict) -> None:
        device = m["devices"][n.sm2_device]
        device[field] = value(b64d(device["public_key"]))
    return change


def _off_curve(point: bytes) -> str:
    """The same x with y + 1: not a point of the curve."""
    return b64url(point[:33] + ((int.from_bytes(point[33:], "big") + 1) % 2**256).to_bytes(32, "big"))


def _set_item(declared: tuple[str, ...], key: str, value: str) -> Callable[[National, dict], None]:
    return lambda n, m: _item(n, m, declared).update({key: value})


def _flip_file(declared: tuple[str, ...]) -> Callable[[National], bytes]:
    def change(n: National) -> bytes:
        path = _item(n, manifest(n.fleet), declared)["file"]

        def flip(entries: dict[str, bytes]) -> None:
            data = bytearray(entries[path])
            data[100] ^= 0x01
            entries[path] = bytes(data)
        return rewrite(n.fleet, files=flip)
    return change


FAKE = "ab" * 32

FLEET_TAMPERED = {
    "sm2-signature-bit": (_fleet(_flip_signature_bit),
                          "signature check failed (bad signature): the record is not as the device signed it",
                          "签名核验失败"),
    "sha256-listed-for-sm3": (_fleet(_listed_by_sha256),
                              "#1: its JWS does not hash to the listed hash (the record was altered)",
                              "哈希值与所列哈希值不符"),
    "device-alg-swapped": (_fleet(_device("alg", lambda _: "EdDSA")),
                           "its public key is not a valid Ed25519 key (an Ed25519 public key is 32 bytes, not 65)",
                           "不是有效的 Ed25519 公钥"),
    "record-alg-swapped": (_fleet(_record_alg("EdDSA")),
                           "refused, header alg is 'EdDSA', not SM2SM3: it is not a record JWS as the protocol spells "
                           "one", "头部 alg 是 'EdDSA'，不是 SM2SM3"),
    "device-alg-unknown": (_fleet(_device("alg", lambda _: "ES256")),
                           "its alg 'ES256' is not one the protocol defines (EdDSA, Ed25519, SM2SM3), so none of its "
                           "records can be checked", "不是协议规定的算法"),
    "sm2-key-off-curve": (_fleet(_device("public_key", _off_curve)),
                          "its public key is not a valid SM2 key (is not a point on the SM2 curve)",
                          "不是 SM2 曲线上的点"),
    "sm2-key-short": (_fleet(_device("public_key", lambda point: b64url(point[1:]))),
                      "its public key is not a valid SM2 key (must be the 65-byte uncompressed SM2 point "
                      "(0x04 || x || y), not 64 bytes)", "应是 65 字节的未压缩 SM2 点"),
    "sm2-key-compressed-prefix": (_fleet(_device("public_key", lambda point: b64url(b"\x02" + point[1:]))),
                                  "(must be the uncompressed SM2 point: its first byte is 0x04)",
                                  "其第一个字节是 0x04"),
    "sm3-edited": (_fleet(_set_item(("sm3",), "sm3", FAKE)),
                   f"sm3 {FAKE!r} differs from the signed declaration", "与已签名的声明"),
    "sm3-file-byte": (_flip_file(("sm3",)), ": the file was altered", "的 SM3 是"),
    "sm3-listed-for-a-sha256-item": (_fleet(_set_item(("sha256",), "sm3", FAKE)),
                                     f", not the declared {FAKE}: the file was altered", "的 SM3 是"),
}


@pytest.mark.parametrize("kind", sorted(FLEET_TAMPERED))
def test_given_a_tampered_mixed_fleet_package_then_the_page_fails_it_as_verify_package_does(driver, national, kind):
    change, says, chinese = FLEET_TAMPERED[kind]
    data = change(national)
    seen = open_and_pick(driver, national, data, key=national.fleet_key)
    shot(driver, f"sm-tampered-{kind}")
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert any(chinese in p for p in seen.problems_zh), seen.problems_zh
    assert seen.problems == in_python(data, national.fleet_key)


def test_given_an_sm3_file_altered_then_both_digests_name_it_in_the_page(driver, national):
    n = national
    data = _flip_file(("sm3",))(n)
    item = _item(n, manifest(n.fleet), ("sm3",))
    where = f"evidence {item['item']} ({item['id']}): file {item['file']} has "
    seen = open_and_pick(driver, n, data, key=n.fleet_key, stream_above=0)
    mine = [p for p in seen.problems if p.startswith(where)]
    assert [p[len(where):].split(" ", 1)[0] for p in mine] == ["SHA-256", "SM3"], seen.problems
    assert seen.problems == in_python(data, n.fleet_key)


def test_given_an_sm2_key_entered_for_a_package_without_an_sm_tree_then_it_checked_nothing(driver, national):
    n = national
    assert "sm" not in manifest(n.fleet)["custody"]
    seen = open_and_pick(driver, n, n.fleet, key=n.fleet_key, sm_key=n.sm_key)
    assert (seen.verdict, seen.problems) == ("ok", [])
    assert ("the package carries no SM tree (custody.sm), so the SM2 key entered on this page checked nothing"
            in seen.notes), seen.notes


# --- the SM custody tree --------------------------------------------------------------------------------------------


def test_given_a_package_with_the_sm_tree_when_both_keys_are_entered_then_the_page_says_ok(driver, national):
    n = national
    sm = manifest(n.sm_tree)["custody"]["sm"]
    assert sm["public_key"] == n.sm_key and sm["proofs"]
    report = verify_package(io.BytesIO(n.sm_tree), n.sm_tree_key, sm_public_key=n.sm_key)
    assert report.ok, report.problems

    seen = open_and_pick(driver, n, n.sm_tree, key=n.sm_tree_key, sm_key=n.sm_key)
    shot(driver, "sm-02-sm-tree-ok")
    assert (seen.verdict, seen.key, seen.problems) == ("ok", "entered", [])
    key_id = SM.hexdigest(b64d(n.sm_key))[:16]
    assert f"SM tree head checked against the SM2 key entered on this page (key_id {key_id})" in seen.notes
    checked = [note for note in seen.notes if note.startswith("SM tree head (SM3, SM2) at size")]
    assert len(checked) == 1 and checked[0] in report.notes, seen.notes  # the same leaves counted as in Python
    assert "SM2 key used" in seen.summary and key_id in seen.summary


def test_given_a_package_with_the_sm_tree_and_no_sm2_key_then_it_is_ok_but_only_self_consistent(driver, national):
    seen = open_and_pick(driver, national, national.sm_tree, key=national.sm_tree_key)
    assert (seen.verdict, seen.problems) == ("ok", [])
    assert any(note.startswith("WARNING: SM tree head checked against the SM2 key inside the package") and
               "self-consistent" in note for note in seen.notes), seen.notes


def _sm(change: Callable[[dict], None]) -> Callable[[National], bytes]:
    """The SM tree in the manifest changed, the package resealed with the server's custody key."""
    return lambda n: rewrite(n.sm_tree, lambda m: change(m["custody"]["sm"]), reseal=n.sm_signer)


def _first_proof(change: Callable[[list[str]], None]) -> Callable[[dict], None]:
    def edit(sm: dict) -> None:
        change(max(sm["proofs"].values(), key=len))
    return edit


def _drop_a_proof(sm: dict) -> None:
    del sm["proofs"][min(sm["proofs"], key=int)]


def _resize(sm: dict) -> None:
    sm["tree_head"]["tree_size"] -= 1


def _key_id(sm: dict) -> None:
    sm["key_id"] = "0" * 16


SM_TREE_TAMPERED = {
    "sm-root": (_sm(lambda sm: sm["tree_head"].update(root_hash="00" * 32)), True,
                "its SM2 signature does not verify with the given SM2 key (forged or altered SM head or root, or "
                "another server's key)", "其 SM2 签名不能用输入的 SM2 公钥验证通过"),
    "sm-proof": (_sm(_first_proof(lambda proof: proof.__setitem__(0, "ff" * 32))), True,
                 "its SM3 inclusion proof does not hold against the SM tree head (size",
                 "其 SM3 包含证明不能针对 SM 树头"),
    "sm-proof-too-short": (_sm(_first_proof(lambda proof: proof.pop())), True, "the proof has ", "需要"),
    "sm-proof-dropped": (_sm(_drop_a_proof), True,
                         "the package carries no SM3 inclusion proof for it in the SM tree",
                         "没有它在 SM 树中的 SM3 包含证明"),
    "sm-proof-extra": (_sm(lambda sm: sm["proofs"].update({"99999": []})), True,
                       "SM tree: a proof for leaf 99999, which the package does not list", "而证据包并未列出这个叶子"),
    "sm-proof-spelling": (_sm(_first_proof(lambda proof: proof.__setitem__(0, proof[0].upper()))), True,
                          "refused, SM proof hash 0 is not lower-case hex", "不是小写十六进制"),
    "sm-size": (_sm(_resize), True, "SM tree head: its tree_size", "不是树头的大小"),
    "sm-signature-spelling": (_sm(lambda sm: sm["tree_head"].update(signature=sm["tree_head"]["signature"][:-2])), True,
                              "refused, its signature is 63 bytes, not the 64 of SM2's r ‖ s, so it was not checked",
                              "已拒绝，其签名"),
    "sm-package-key-off-curve": (_sm(lambda sm: sm.update(public_key=_off_curve(b64d(sm["public_key"])))), False,
                                 "the SM2 custody public key in the package is not a valid SM2 key (the SM2 public "
                                 "key is not a point on the curve)", "证据包中的 SM2 监管公钥不是有效的 SM2 公钥"),
    "sm-package-key-id": (_sm(_key_id), False, "the package's SM2 custody key_id does not match its public key",
                          "SM2 监管公钥 key_id 与其公钥不符"),
}


@pytest.mark.parametrize("kind", sorted(SM_TREE_TAMPERED))
def test_given_a_tampered_sm_tree_then_the_page_fails_it_as_verify_package_does(driver, national, kind):
    change, enter_sm_key, says, chinese = SM_TREE_TAMPERED[kind]
    data = change(national)
    sm_key = national.sm_key if enter_sm_key else None
    seen = open_and_pick(driver, national, data, key=national.sm_tree_key, sm_key=sm_key)
    shot(driver, f"sm-tree-tampered-{kind}")
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert any(chinese in p for p in seen.problems_zh), seen.problems_zh
    assert not any(p.startswith("tree head") for p in seen.problems)  # the SHA-256 tree still holds
    assert seen.problems == in_python(data, national.sm_tree_key, sm_key)


@pytest.mark.parametrize("entered, says", [
    ("other", "its SM2 signature does not verify with the given SM2 key"),
    ("not-a-key", "the SM2 public key entered on this page is not base64url of an SM2 point (not base64url"),
    ("off-curve", "the SM2 public key entered on this page is not base64url of an SM2 point (the SM2 public key is "
                  "not a point on the curve)"),
    ("ed25519", "the SM2 public key entered on this page is not base64url of an SM2 point (an SM2 public key is the "
                "uncompressed point, 65 bytes starting 0x04)"),
])
def test_given_the_wrong_sm2_key_when_the_clerk_enters_it_then_the_package_fails(driver, national, entered, says):
    n = national
    key = {"other": lambda: b64url(SM.generate()[1]), "not-a-key": lambda: "not-a-key",
           "off-curve": lambda: _off_curve(b64d(n.sm_key)), "ed25519": lambda: n.sm_tree_key}[entered]()
    seen = open_and_pick(driver, n, n.sm_tree, key=n.sm_tree_key, sm_key=key)
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert seen.problems == in_python(n.sm_tree, n.sm_tree_key, key)
    if entered == "other":  # the SM head, and the index's SM2 seal, which that key must check too
        assert len(seen.problems) == 2 and seen.problems[1].startswith("package-index.json: its SM2 signature")
        assert any(note.startswith("note: the package names another SM2 custody key") for note in seen.notes)
