"""verify.html checks the package seal in the national algorithms too (issue 23; PROTOCOL "Evidence packages, as
built").

Given the package of a server that keeps the SM custody tree (tests/media/verify_page.py `national`: its index lists
every member's SM3 and is sealed in SM2 by the SM custody key), when a clerk picks it in verify.html in headless
Chromium, then the page says `ok`, with its SM3 hashed by the vendored library or, above the page's limit, by its own
incremental SM3; and when an SM3 in the index, a bit of the SM2 seal, or the SM2 key that made the seal is changed,
the page fails it with the English lines `verify-package` reports for the same bytes, each with its Chinese above. The
package of an intl-only server carries no SM seal, and the page reads it as before.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable

import pytest

from backend.core.crypto import SM
from media.custody.keys import SmSigner, b64url
from media.package_index import INDEX_NAME, sign, signed_part
from media.package_verify import verify_package
from tests.media.test_package import rewrite
from tests.media.verify_page import National, driver, in_python, national, open_and_pick, shot

__all__ = ["driver", "national"]  # the fixtures: the packages in the national algorithms, and the browser


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def index_of(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read(INDEX_NAME))


def a_file(index: dict) -> dict:
    return next(m for m in index["members"] if m["name"].startswith("files/"))


def _index(change: Callable[[dict], None], *, ed25519: bool = False, both: bool = False,
           sm: Callable[[], SmSigner] | None = None) -> Callable[[National], bytes]:
    """The SM server's package with its index changed; signed again by nobody, by the Ed25519 custody key alone
    (`ed25519`), or in SM2 (by the server's SM2 key with `both`, else by `sm`) and then by the Ed25519 key."""
    def make(n: National) -> bytes:
        def edit(entries: dict[str, bytes]) -> None:
            index = json.loads(entries[INDEX_NAME])
            change(index)
            if both or sm is not None:
                index = sign(n.sm_signer, index, n.sm_signer.sm if both else sm())
            elif ed25519:
                index["signature"] = n.sm_signer.sign(signed_part(index))
            entries[INDEX_NAME] = json.dumps(index).encode()
        return rewrite(n.sm_tree, files=edit)
    return make


def _sm3(value: str) -> Callable[[dict], None]:
    return lambda index: a_file(index).update(sm3=value)


def _flip_sm_seal(index: dict) -> None:
    raw = bytearray(b64d(index["sm_signature"]))
    raw[9] ^= 0x01
    index["sm_signature"] = b64url(bytes(raw))


def _stranger() -> SmSigner:
    private, public = SM.generate()
    return SmSigner(private_key=private, public_raw=public)


def _flip_file(n: National) -> bytes:
    name = a_file(index_of(n.sm_tree))["name"]

    def flip(entries: dict[str, bytes]) -> None:
        data = bytearray(entries[name])
        data[5] ^= 0x01
        entries[name] = bytes(data)
    return rewrite(n.sm_tree, files=flip)


SM_SEAL = f"{INDEX_NAME}: its SM2 signature does not verify with the given SM2 key"
SM_SEAL_ZH = "其 SM2 签名不能用输入的 SM2 公钥验证通过"

TAMPERED = {
    "sm3-altered": (_index(_sm3("ab" * 32)), f"; sealed {'ab' * 32}): it was edited", "不是索引封签的那个成员（SM3 "),
    "sm3-altered-by-both-keys": (_index(_sm3("cd" * 32), both=True),
                                 f"; sealed {'cd' * 32}): it was edited", "不是索引封签的那个成员（SM3"),
    "sm3-spelling": (_index(_sm3("AB" * 32), both=True), "refused, its sealed sm3 is not lower-case hex",
                     "不是小写十六进制"),
    "sm-seal-bit": (_index(_flip_sm_seal), SM_SEAL, SM_SEAL_ZH),
    "sm-seal-bit-ed25519-resigned": (_index(_flip_sm_seal, ed25519=True), SM_SEAL, SM_SEAL_ZH),
    "sm-seal-other-key": (_index(lambda index: None, sm=_stranger), SM_SEAL, SM_SEAL_ZH),
    "sm-seal-spelling": (_index(lambda index: index.update(sm_signature=index["sm_signature"][:-2]), ed25519=True),
                         "refused, its SM2 signature is 63 bytes, not the 64 of SM2's r ‖ s, so nothing it lists is "
                         "vouched for in SM2", "因此它所列的内容都没有 SM2 担保"),
    "file-byte": (_flip_file, "not the member the index sealed (SM3 ", "不是索引封签的那个成员（SM3 "),
}


def test_given_an_sm_sealed_package_when_both_keys_are_entered_then_the_page_says_ok(driver, national):
    n = national
    index = index_of(n.sm_tree)
    assert index["sm_algorithm"] == "SM2" and all("sm3" in m for m in index["members"])
    assert verify_package(io.BytesIO(n.sm_tree), n.sm_tree_key, sm_public_key=n.sm_key).ok
    seen = open_and_pick(driver, n, n.sm_tree, key=n.sm_tree_key, sm_key=n.sm_key)
    shot(driver, "sm-seal-01-ok")
    assert (seen.verdict, seen.problems) == ("ok", [])
    assert not any("SM2" in note and INDEX_NAME in note for note in seen.notes), seen.notes


def test_given_an_sm_sealed_package_hashed_as_it_is_read_then_every_member_matches_its_sealed_sm3(driver, national):
    """At limit 0 every member's SM3 is the page's incremental SM3 (sm3.js), not the library's over a whole buffer."""
    seen = open_and_pick(driver, national, national.sm_tree, key=national.sm_tree_key, sm_key=national.sm_key,
                         stream_above=0)
    assert (seen.verdict, seen.problems) == ("ok", [])


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_given_a_tampered_sm_seal_then_the_page_fails_it_as_verify_package_does(driver, national, kind):
    change, says, chinese = TAMPERED[kind]
    data = change(national)
    seen = open_and_pick(driver, national, data, key=national.sm_tree_key, sm_key=national.sm_key)
    shot(driver, f"sm-seal-tampered-{kind}")
    assert seen.verdict == "fail"
    assert any(says in p for p in seen.problems), seen.problems
    assert any(chinese in p for p in seen.problems_zh), seen.problems_zh
    assert seen.problems == in_python(data, national.sm_tree_key, national.sm_key)


def test_given_an_sm2_seal_by_another_key_without_an_sm2_key_entered_then_the_package_key_refuses_it(
        driver, national):
    data = _index(lambda index: None, sm=_stranger)(national)
    seen = open_and_pick(driver, national, data, key=national.sm_tree_key)
    assert seen.verdict == "fail"
    assert seen.problems == [f"{INDEX_NAME}: its SM2 signature does not verify with the package SM2 key (the index "
                             "was altered, or made by another key)"] == in_python(data, national.sm_tree_key)


def test_given_a_file_without_an_sm3_in_the_seal_then_the_page_notes_it_as_verify_package_does(driver, national):
    """A file of an item verified before the server computed SM3 is sealed by its SHA-256 alone, and said to be."""
    data = _index(lambda index: a_file(index).pop("sm3"), both=True)(national)
    report = verify_package(io.BytesIO(data), national.sm_tree_key, sm_public_key=national.sm_key)
    seen = open_and_pick(driver, national, data, key=national.sm_tree_key, sm_key=national.sm_key)
    assert (seen.verdict, seen.problems) == ("ok", []) and report.ok
    (note,) = [n for n in report.notes if n.startswith(f"{INDEX_NAME}: no SM3 for ")]
    assert note in seen.notes, seen.notes


def test_given_an_intl_only_server_then_its_index_has_no_sm_seal_and_the_page_reads_it_as_before(driver, national):
    index = index_of(national.fleet)
    assert not {"sm_algorithm", "sm_key_id", "sm_signature"} & set(index)
    assert all(set(m) == {"name", "sha256", "size"} for m in index["members"])
    seen = open_and_pick(driver, national, national.fleet, key=national.fleet_key)
    assert (seen.verdict, seen.problems) == ("ok", [])
    assert not any("SM2" in note and INDEX_NAME in note for note in seen.notes), seen.notes
