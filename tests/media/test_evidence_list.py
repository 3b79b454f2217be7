"""The evidence list (电子数据清单) of a package, as CSV, HTML and PDF: what a court needs is in all three.

Given a real case (three officers, one with an expired certificate and one with none; a photo and a body-camera
clip with their places, a document never uploaded, a hand-over to a custodian, a read), when it is exported,
then each list holds the institution and its credit code, every officer's certificate as judged on the day,
every item's hash and size, Beijing times with their offset, and each item's custody history in Chinese.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.core.models import Officer
from media import evidence_list
from media.evidence_list import pdf as evidence_list_pdf
from sync.credit_code import check_character
from tests.media.test_package import Built, cli, upload
from tests.phones import TestPhone, uid

ARTIFACTS = Path(os.environ.get("FIELDCASE_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts" / "media")
CREDIT_CODE = "91330106MA2B3C4D5" + check_character("91330106MA2B3C4D5")
INSTITUTION = {"name": "星光艺术培训中心", "region": "330106", "credit_code": CREDIT_CODE,
               "address": "杭州市西湖区文三路 1 号"}
PURPOSE = "移送法制审核 <b>&</b>"  # markup in what a person typed must come out as text
PLACE = {"lat": 30.274083, "lon": 120.15507, "accuracy_m": 8}
ACTIONS = ("申报 declared", "开始上传 upload started", "核验通过 verified", "申请移交 transfer requested",
           "已移交 transferred", "读取原件 read", "导出 exported")


def capture(phone: TestPhone, iid: str, data: bytes, kind: str, media_type: str, **extra: Any) -> tuple[str, str]:
    eid = uid()
    body = {"evidence_id": eid, "inspection_id": iid, "kind": kind, "media_type": media_type,
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "captured_at": phone.clock.isoformat(), **extra}
    return eid, phone.record("evidence.capture", body)


@pytest.fixture
def exported(client, officers) -> Built:
    a, b, c = officers.make(name="张伟"), officers.make(name="李娜"), officers.make(name="王芳", certified=False)
    custodian = officers.make(roles=("custodian",), name="赵敏")
    ha, hc = officers.headers(a), officers.headers(custodian)
    with officers.db.transaction() as s:  # 李娜's certificate lapsed a month before the inspection
        lapsed = s.get(Officer, b.id)
        lapsed.cert_valid_from = date.today() - timedelta(days=800)
        lapsed.cert_valid_until = date.today() - timedelta(days=30)
    pa = TestPhone(client, a, ha, "phone A")
    cid, opened = pa.open_case(INSTITUTION)
    iid, started = pa.start(cid, [a.id, b.id, c.id])
    photo_bytes, clip_bytes = b"photo \xff\xd8 bytes", b"body camera clip " * 500
    photo, cap1 = capture(pa, iid, photo_bytes, "photo", "image/jpeg", location=PLACE)
    clip_start = pa.clock - timedelta(seconds=30)
    video, cap2 = capture(pa, iid, clip_bytes, "video", "video/mp4", location=PLACE, clip={
        "camera_serial": "CAM-7", "clip_index": 0, "started_at": clip_start.isoformat(),
        "ended_at": pa.clock.isoformat()})
    paper, cap3 = capture(pa, iid, b"never uploaded", "document", "application/pdf")
    results = pa.push([opened, started, cap1, cap2, cap3, pa.end(iid)])["results"]
    assert all(r["status"] == "applied" for r in results), results
    case_id = results[0]["refs"]["case_id"]
    upload(pa, photo, photo_bytes)
    upload(pa, video, clip_bytes)
    asked = client.post(f"/api/v1/custody/holdings/{photo}/transfer", headers=ha,
                        json={"to": custodian.id, "reason": "移交证据保管室"})
    assert asked.status_code == 200, asked.json
    assert client.post(f"/api/v1/custody/holdings/{photo}/acknowledge", headers=hc, json={}).status_code == 200
    assert client.get(f"/api/v1/evidence/{photo}/content", query_string={"purpose": "审查"},
                      headers=hc).status_code == 200
    coverage = client.get(f"/api/v1/inspections/{iid}/coverage", headers=hc).json

    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE}, headers=hc)
    assert r.status_code == 200, r.data[:500]
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    with officers.db.transaction() as s:
        people = {o.id: (o.name, o.cert_number) for o in (s.get(Officer, x.id) for x in (a, b, c, custodian))}
    return Built(client=client, zip=r.data, zf=zf, case_id=case_id, a=a, b=b, c=c, custodian=custodian,
                 people=people, photo=photo, video=video, paper=paper, coverage=coverage,
                 key=client.get("/api/v1/custody/public-key").json["public_key"],
                 items={i["id"]: i for i in json.loads(zf.read("manifest.json"))["evidence"]})


def must_have(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} missing: apt-get install poppler-utils (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "evidence-list.pdf"
    path.write_bytes(data)
    out = subprocess.run([must_have("pdftotext"), "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    assert not out.stderr, out.stderr  # poppler complains of a missing language pack or a broken font here
    return out.stdout.decode()


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_holds_what_a_court_needs(text: str, e: Built) -> None:
    """Everything a court asks for, looked for with the white space (where lines wrap) taken out."""
    text = squash(text)

    def has(needle: str) -> bool:
        return squash(needle) in text

    assert has(INSTITUTION["name"]) and has(CREDIT_CODE)
    for person in (e.a, e.b, e.c):
        name, number = e.people[person.id]
        assert has(name) and (number is None or has(number)), (name, number)
    assert has("证件已过期 expired") and has("无证 no certificate") and has("有效 valid")
    for item in e.items.values():
        assert has(item["sha256"]) and has(str(item["size"])), item["id"]
    assert re.search(r"\d{4}-\d\d-\d\d\d\d:\d\d:\d\d\+08:00", text)
    assert not re.search(r"\d\d:\d\d:\d\d(\.\d+)?Z", text), "every time is in Beijing time, none in UTC"
    for action in ACTIONS:
        assert has(action), action
    assert has("移交证据保管室")  # the hand-over's reason
    assert has("30.274083, 120.155070 ±8 m")
    assert has(evidence_list.COVERAGE[e.coverage["status"]][0]) and has("CAM-7 #0")


def test_the_package_holds_the_three_lists_and_still_verifies(exported, tmp_path):
    names = set(exported.zf.namelist())
    assert {"evidence-list.csv", "evidence-list.html", "evidence-list.pdf"} <= names
    result = cli(tmp_path, exported.zip, "--public-key", exported.key)
    assert result.exit_code == 0 and result.output.rstrip().endswith(": OK"), result.output


def test_the_csv_has_one_row_per_item_and_opens_in_excel(exported):
    raw = exported.zf.read("evidence-list.csv")
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM: Excel then reads UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[0] == "序号 Item" and header[3] == "SHA-256"
    assert "统一社会信用代码 Unified social credit code" in header
    assert len(body) == len(exported.items) and all(len(r) == len(header) for r in body)
    by_sha = {r[3]: dict(zip(header, r, strict=True)) for r in body}
    for item in exported.items.values():
        row = by_sha[item["sha256"]]
        assert row["大小(字节) Size (bytes)"] == str(item["size"])
        assert row["文件名 File"] == item["file"] or not item["file"]
        assert row["采集时间 Captured at"].endswith("+08:00")
        assert row["统一社会信用代码 Unified social credit code"] == CREDIT_CODE
    paper = by_sha[exported.items[exported.paper]["sha256"]]
    assert "未随包提供 not included" in paper["文件名 File"] and paper["开始上传 Upload started"] == ""
    photo = by_sha[exported.items[exported.photo]["sha256"]]
    assert photo["开始上传 Upload started"].endswith("+08:00") and photo["核验时间 Verified at"].endswith("+08:00")
    assert photo["全过程记录 Recording coverage"] == ""  # only recordings carry the verdict
    assert photo["保管人 Custody holder"] == exported.people[exported.custodian.id][0]
    history = photo["监管记录 Custody history"].splitlines()
    assert [next(a for a in ACTIONS if a in line) for line in history] == list(ACTIONS)
    assert "用途 purpose: 审查" in history[5] and f"用途 purpose: {PURPOSE}" in history[6]
    video = by_sha[exported.items[exported.video]["sha256"]]
    assert video["全过程记录 Recording coverage"].startswith("摄像机 camera CAM-7 #0")
    assert_holds_what_a_court_needs("\n".join(",".join(r) for r in rows), exported)


def test_the_html_page_is_self_contained_and_escaped(exported):
    page = exported.zf.read("evidence-list.html").decode()
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"zh-CN\">") and "电子数据清单" in page
    assert "<script" not in page and not re.search(r"(src|href)=|url\(|@import", page)
    assert "<b>&</b>" not in page and "移送法制审核 &lt;b&gt;&amp;&lt;/b&gt;" in page
    assert_holds_what_a_court_needs(html.unescape(re.sub(r"<[^>]+>", " ", page)), exported)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "evidence-list.html").write_text(page, encoding="utf-8")


def test_the_pdf_carries_its_own_chinese_glyphs(exported, tmp_path):
    data = exported.zf.read("evidence-list.pdf")
    assert data.startswith(b"%PDF-")
    text = pdf_text(data, tmp_path)
    assert_holds_what_a_court_needs(text, exported)
    assert "电子数据清单" in text and "执法人员" in text and "监管记录" in text and "第 1 页 Page 1" in text

    path = tmp_path / "evidence-list.pdf"
    fonts = subprocess.run([must_have("pdffonts"), str(path)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in fonts.splitlines()[2:]]
    assert rows and all("WenQuanYiZenHei" in r[0] for r in rows), fonts  # no other font, not even Helvetica
    assert all(r[-5:-2] == ["yes", "yes", "yes"] for r in rows), fonts  # embedded, subset, with a Unicode map

    # Not tofu: every character the PDF shows has a glyph in the font it embeds (glyph 0 is the empty box).
    from reportlab.pdfbase import pdfmetrics
    face = pdfmetrics.getFont(evidence_list_pdf.pdf_font()).face
    missing = sorted({ch for ch in text if not ch.isspace() and face.charToGlyph.get(ord(ch), 0) == 0})
    assert not missing, missing

    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # for people to look at, as the console's screenshots
    prefix = ARTIFACTS / "evidence-list"
    prefix.with_suffix(".pdf").write_bytes(data)
    subprocess.run([must_have("pdftoppm"), "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(path),
                    str(prefix)], check=True)
    from PIL import Image
    with Image.open(f"{prefix}.png") as page:
        dark = sum(page.convert("L").point(lambda v: 255 if v < 128 else 0).histogram()[255:])
    assert dark > 20_000, "page 1 renders with text on it"


def test_without_a_cjk_truetype_font_the_pdf_still_comes_out_with_a_cid_font(exported, monkeypatch):
    manifest = json.loads(exported.zf.read("manifest.json"))
    listing = {"title": ("电子数据清单", "Evidence list"), "case_id": manifest["case"]["id"], "context": [],
               "header": [(("被检查单位", "Institution"), INSTITUTION["name"])], "officers": [], "inspections": [],
               "items": []}
    monkeypatch.setattr(evidence_list_pdf, "FONT_FILES", (("/nonexistent/font.ttc", 0),))
    evidence_list_pdf.pdf_font.cache_clear()
    try:
        data = evidence_list.to_pdf(listing)
    finally:
        evidence_list_pdf.pdf_font.cache_clear()
    assert data.startswith(b"%PDF-") and b"/STSong-Light" in data and b"/FontFile2" not in data
