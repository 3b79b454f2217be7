"""verify.html in a real browser: the no-install verifier every package carries (PROTOCOL "Evidence packages").

Given a package of a real case, a clerk opens the `verify.html` it carries from disk in headless Chromium and picks
the ZIP (tests/media/verify_page.py). Then `#verdict` says `ok`, with the notes and summary a reader needs, and the
page reads what the package writer can write (ZIP64, data descriptors, DEFLATE, members of many chunks) exactly as
`verify-package` does; the page is one file that loads nothing, and its Chinese and English are drawn with real
glyphs. Tampered packages: tests/media/test_verify_html_tampered.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from media import verify_html
from media.package_index import INDEX_NAME
from media.package_verify import verify_package
from tests.media.test_package import rewrite
from tests.media.verify_page import base, driver, in_python, open_and_pick, shot

__all__ = ["base", "driver"]  # the fixtures: the module's packages, and the browser


def test_given_a_package_then_it_carries_verify_html_sealed_like_every_member(base):
    archive = zipfile.ZipFile(io.BytesIO(base.zip))
    assert archive.read(verify_html.NAME) == verify_html.page()
    sealed = {m["name"] for m in json.loads(archive.read(INDEX_NAME))["members"]}
    assert verify_html.NAME in sealed
    assert verify_package(io.BytesIO(base.zip), base.key).ok


def test_given_the_page_then_it_is_one_file_that_loads_nothing_and_runs_only_its_own_script(base):
    page = base.page.read_text(encoding="utf-8")
    assert page.count("<script>") == 1 and page.count("<style>") == 1
    # The vendored SM2/SM3 library is inlined as it is vendored, byte for byte (vendor/README.md); the addresses in
    # it are in its comments (where its authors cite papers), never loaded: every other byte of the page names none.
    vendored = (Path(verify_html.__file__).parent / "vendor" / "sm-crypto-v2.js").read_text(encoding="utf-8")
    assert page.count(vendored) == 1
    own = page.replace(vendored, "")
    for reference in ("src=", "href=", "url(", "@import", "http://", "https://"):
        assert reference not in own, reference
        for line in vendored.splitlines():
            if reference in line:
                assert line.lstrip().startswith(("//", "*")), line
    csp = page.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0]
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]

    def allowed(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert csp == (f"default-src 'none'; script-src {allowed(script)}; style-src {allowed(style)}; base-uri 'none'; "
                   "form-action 'none'")


def test_given_a_good_package_when_a_clerk_enters_the_custody_key_and_picks_it_then_the_verdict_is_ok(driver, base):
    assert "timestamp_token" in base.manifest["custody"]["tree_head"]  # the test TSA stamped the head
    seen = open_and_pick(driver, base, base.zip, key=base.key)
    shot(driver, "01-good-package-ok")
    assert (seen.verdict, seen.key, seen.problems) == ("ok", "entered", [])
    assert in_python(base.zip, base.key) == []
    assert any(n.startswith("tree head checked against the key entered on this page") for n in seen.notes)
    assert any(n.startswith("tree head timestamped at ") for n in seen.notes), seen.notes
    assert base.manifest["case"]["id"] in seen.summary and "7 records from 2 devices" in seen.summary


def test_given_a_good_package_and_no_key_then_it_is_ok_but_only_self_consistent(driver, base):
    seen = open_and_pick(driver, base, base.zip)
    assert (seen.verdict, seen.key, seen.problems) == ("ok", "package", [])
    assert any(n.startswith("WARNING") and "self-consistent" in n for n in seen.notes), seen.notes


def test_given_a_package_of_chosen_items_then_the_page_verifies_it_as_a_whole_one(driver, base):
    assert json.loads(zipfile.ZipFile(io.BytesIO(base.part)).read("manifest.json"))["package"]["items"]
    assert in_python(base.part, base.key) == []
    seen = open_and_pick(driver, base, base.part, key=base.key, name="part.zip")
    assert (seen.verdict, seen.problems) == ("ok", [])


def _hide_deletion(m: dict) -> None:
    for item in m["evidence"]:
        item["custody_events"] = [e for e in item["custody_events"] if json.loads(e["leaf"])["action"] != "deleted"]


def test_given_an_item_deleted_under_retention_then_the_page_says_so_and_a_hidden_deletion_fails(driver, base):
    seen = open_and_pick(driver, base, base.retained, key=base.key, name="retained.zip")
    assert (seen.verdict, seen.problems) == ("ok", []), seen.problems
    assert any("its file was deleted under the retention policy" in n for n in seen.notes), seen.notes
    assert "1 deleted under retention" in seen.summary

    hidden = rewrite(base.retained, _hide_deletion, reseal=base.signer)
    seen = open_and_pick(driver, base, hidden, key=base.key, name="retained.zip")
    assert seen.verdict == "fail"
    assert any("listed as deleted, but no proven 'deleted' custody event says so" in p for p in seen.problems)
    assert seen.problems == in_python(hidden, base.key)


def test_given_members_hashed_as_they_are_read_then_the_verdict_is_the_same(driver, base):
    """Members above the page's limit (256 MiB) are hashed incrementally by its own SHA-256; at limit 0 every
    member is, and every hash must still agree with the seal and the declarations."""
    seen = open_and_pick(driver, base, base.zip, key=base.key, stream_above=0)
    assert (seen.verdict, seen.problems) == ("ok", [])


class _Sink:
    """Not seekable, as the package writer's drain: zipfile then writes data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, block: bytes) -> int:
        self.data += block
        return len(block)

    def flush(self) -> None:
        return None


def test_given_a_package_written_with_zip64_records_then_the_page_reads_it(driver, base, monkeypatch):
    """What the writer does for a file past 2 GiB (ZIP64 sizes and offsets, data descriptors), at a lowered
    threshold so that a small package needs it everywhere."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 64)
    source, sink = zipfile.ZipFile(io.BytesIO(base.zip)), _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[arg-type]
        for info in source.infolist():
            if info.filename.startswith("files/"):
                stored = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                stored.file_size = info.file_size
                with zf.open(stored, "w") as target:
                    target.write(source.read(info))
            else:
                zf.writestr(info.filename, source.read(info))
    data = bytes(sink.data)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # the ZIP64 end record and its locator
    assert in_python(data, base.key) == []
    seen = open_and_pick(driver, base, data, key=base.key, name="zip64.zip")
    assert (seen.verdict, seen.problems) == ("ok", [])


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("stream_above", [None, 0], ids=["web-crypto", "incremental"])
def test_given_a_member_of_many_chunks_edited_then_the_page_hashes_it_as_verify_package_does(
        driver, base, compression, stream_above):
    """Both verifiers print the SHA-256 of an edited member: a member of several 1 MiB chunks (and not a whole
    number of SHA-256 blocks) must hash alike, stored or inflated, by Web Crypto or by the page's own SHA-256."""
    big = random.Random(15).randbytes(5 * 1024 * 1024 + 7)
    source, out = zipfile.ZipFile(io.BytesIO(base.zip)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in source.infolist():
            if info.filename == "evidence-list.pdf":
                zf.writestr(info.filename, big, compress_type=compression)
            else:
                zf.writestr(info, source.read(info))
    data = out.getvalue()
    seen = open_and_pick(driver, base, data, key=base.key, stream_above=stream_above)
    assert seen.verdict == "fail"
    assert (f"member evidence-list.pdf: not the member the index sealed (SHA-256 {hashlib.sha256(big).hexdigest()}, "
            f"{len(big)} bytes;") in " ".join(seen.problems), seen.problems
    assert seen.problems == in_python(data, base.key)


def test_given_the_page_then_its_chinese_and_english_render_with_real_glyphs(driver, base):
    """No web font: the computer's own. Each character drawn as the page draws text must be a glyph of its own,
    not the box a missing glyph is drawn as (U+E000, a private-use character no font draws)."""
    open_and_pick(driver, base, base.zip, key=base.key)
    prints = driver.execute_script("""
        const canvas = document.createElement("canvas");
        canvas.width = 48; canvas.height = 48;
        const g = canvas.getContext("2d", {willReadFrequently: true});
        const family = getComputedStyle(document.getElementById("verdict")).fontFamily;
        return Array.from(arguments[0], (ch) => {
          g.clearRect(0, 0, 48, 48);
          g.font = "32px " + family;
          g.fillText(ch, 4, 38);
          const alpha = g.getImageData(0, 0, 48, 48).data.filter((_, i) => i % 4 === 3);
          return alpha.reduce((sum, a, i) => (sum * 31 + a * (i + 1)) % 1000000007, 7) + ":" +
                 alpha.filter((a) => a > 0).length;
        });
    """, "核验通过问题证据包Verifd\ue000")
    blank, notdef = "7:0", prints[-1]
    glyphs = prints[:-1]
    assert blank not in glyphs and notdef not in glyphs, prints
    assert len(set(glyphs)) == len(glyphs), prints
    verdict = driver.find_element("id", "verdict")
    assert verdict.find_element("css selector", "[lang='zh-CN']").text.startswith("核验通过")
    assert verdict.find_element("css selector", "[lang='en']").text.startswith("Verified")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # no CSP violation, no script error
