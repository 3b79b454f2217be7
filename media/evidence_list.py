"""电子数据清单: a package's evidence list for people without tools, as CSV, HTML and PDF (PROTOCOL §8).

`build` makes the list as plain data from the package's manifest (the same items, file names, hashes and the
custody events the package proves) plus, from the same transaction, what a court asks for that the manifest
does not carry: the officers' enforcement certificates, upload times, capture places, and each inspection's
recording coverage (`media.coverage.inspection_coverage`, the verdict the console shows). `to_csv`, `to_html`
and `to_pdf` only lay that data out. Headings are Chinese first, English after; times are Beijing time with
the offset (`2026-12-06 12:00:00+08:00`). A certificate is judged on the local day of the inspection (of the
capture, for a capturing officer) against the certificate the officers table holds now, as the audit judges
it: there is no certificate history, so a certificate replaced since shows the new one.

**PDF font.** The PDF embeds a CJK TrueType font, subset to the glyphs it uses: WenQuanYi Zen Hei (Debian's
fonts-wqy-zenhei, GPL with a font-embedding exception), not reportlab's built-in CID font STSong-Light, which
puts no glyph in the file. With STSong-Light every reader must bring an Adobe-GB1 font of its own, so the
list looks different on every machine, and a reader without one shows nothing (poppler without its language
pack says "Missing language pack for 'Adobe-GB1'" and leaves the page blank; Acrobat asks for its Asian font
pack); PDF/A, the archive format, requires embedded fonts. Embedded, the page looks the same everywhere and
its text still extracts (reportlab writes a ToUnicode map). The cost: a font file on the server, tens of KB
of subset per PDF, and about 0.15 s to read the 17 MB .ttc once per process. A font from PyPI would be more
self-contained, but the CJK ones there are one-off packages of other projects, and Noto CJK has CFF outlines,
which reportlab cannot embed. Without any of FONT_FILES the list falls back to STSong-Light, with a warning
in the log, rather than fail an export whose custody events are already committed.
"""

from __future__ import annotations

import csv
import functools
import html
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import NotFound
from backend.core.models import Evidence, Officer, Upload
from backend.core.times import LOCAL_TZ
from media.coverage import DEFAULT_TOLERANCE, inspection_coverage

log = logging.getLogger(__name__)

Label = tuple[str, str]  # (Chinese, English)

KINDS = {"photo": ("照片", "photo"), "video": ("视频", "video"), "audio": ("录音", "audio"),
         "document": ("文书", "document"), "signature": ("签名", "signature")}
STATUSES = {"declared": ("已申报，未上传", "declared, not uploaded"), "verified": ("已核验", "verified"),
            "mismatch": ("哈希不符", "hash mismatch"), "deleted": ("保存期满已删除", "deleted under retention")}
ACTIONS = {"declared": ("申报", "declared"), "upload_started": ("开始上传", "upload started"),
           "verified": ("核验通过", "verified"), "mismatch": ("哈希不符", "mismatch"), "read": ("读取原件", "read"),
           "thumbnail": ("生成缩略图", "thumbnail made"), "transfer_requested": ("申请移交", "transfer requested"),
           "transferred": ("已移交", "transferred"), "transfer_refused": ("拒收", "transfer refused"),
           "exported": ("导出", "exported"), "deleted": ("保存期满删除", "deleted under retention")}
COVERAGE = {"complete": ("完整", "complete"), "explained": ("缺口已说明", "gaps explained"),
            "gaps": ("有缺口", "gaps"), "none": ("无录像", "no recording"), "open": ("检查未结束", "open")}
OUTCOMES = {"no_violation": ("未发现违规", "no violation"), "violation_found": ("发现违规", "violation found"),
            "rectification_ordered": ("责令整改", "rectification ordered"),
            "not_inspected": ("未检查", "not inspected")}
DETAILS = (("purpose", "用途 purpose"), ("reason", "理由 reason"), ("from", "移交人 from"), ("to", "接收人 to"),
           ("note", "备注 note"), ("package", "包 package"))

ITEM_COLUMNS: tuple[Label, ...] = (
    ("序号", "Item"), ("类型", "Kind"), ("文件名", "File"), ("SHA-256", ""), ("大小(字节)", "Size (bytes)"),
    ("采集时间", "Captured at"), ("采集地点", "Place (lat, lon, accuracy)"), ("采集设备", "Device"),
    ("采集人及执法证", "Captured by, certificate"), ("开始上传", "Upload started"), ("接收完成", "Upload received"),
    ("核验时间", "Verified at"), ("状态", "Status"), ("保管人", "Custody holder"),
    ("全过程记录", "Recording coverage"), ("所属检查", "Inspection"))
CSV_EXTRA: tuple[Label, ...] = (("监管记录", "Custody history"), ("检查人员及执法证", "Inspection officers"),
                                ("案件编号", "Case"), ("被检查单位", "Institution"),
                                ("统一社会信用代码", "Unified social credit code"))
OFFICER_COLUMNS: tuple[Label, ...] = (
    ("姓名", "Name"), ("人员编号", "Officer ID"), ("执法证号", "Certificate no."), ("有效期", "Valid"),
    ("核对日期", "Judged on"), ("证件状态", "Certificate status"), ("身份", "Role"))
INSPECTION_COLUMNS: tuple[Label, ...] = (
    ("检查编号", "Inspection"), ("开始", "Started"), ("结束", "Ended"), ("地点", "Place"),
    ("检查人员", "Officers"), ("结果", "Outcome"), ("全过程记录", "Recording coverage"))
CUSTODY_COLUMNS: tuple[Label, ...] = (("时间", "Time"), ("操作人", "Actor"), ("操作", "Action"),
                                      ("用途/理由", "Purpose / reason"))
NOTE = ("核验：fieldcase verify-package 文件 --public-key 公钥（服务器公钥见 GET /api/v1/custody/public-key）；"
        "每个文件的 SHA-256 亦可用任何工具（如 sha256sum）核对。"
        " To verify offline: fieldcase verify-package FILE --public-key KEY; each file's SHA-256 can also be "
        "checked with any tool, e.g. sha256sum.")
_IN_CHUNK = 500


def _say(table: dict[str, Label], code: str | None) -> str:
    zh, en = table.get(code or "", (code or "", ""))
    return f"{zh} {en}".strip()


def _beijing(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(LOCAL_TZ)


def local(value: Any) -> str:
    """Beijing time with its offset, to the second: `2026-12-06 12:00:00+08:00`; nothing for nothing."""
    when = _beijing(value)
    return "" if when is None else when.isoformat(sep=" ", timespec="seconds")


def _day(value: Any) -> date | None:
    when = _beijing(value)
    return None if when is None else when.date()


def _place(location: dict[str, Any] | None) -> str:
    if not location:
        return ""
    accuracy = location.get("accuracy_m")
    return f"{location['lat']:.6f}, {location['lon']:.6f}" + ("" if accuracy is None else f" ±{accuracy:g} m")


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    values = sorted(set(values))
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


def _certificate(person: Officer | None, day: date | None) -> tuple[str, str, str]:
    """(number, validity, verdict on `day`), the verdict in the audit's terms (`expired_certificate`)."""
    if person is None:
        return "", "", "未知人员 unknown officer"
    if not person.cert_number:
        return "", "", "无证 no certificate"
    span = f"{person.cert_valid_from or '…'} 至 {person.cert_valid_until or '…'}"
    if day is not None and person.certificate_valid_on(day):
        return person.cert_number, span, "有效 valid"
    if not person.cert_valid_until:
        return person.cert_number, span, "无证 no certificate"
    if day is not None and person.cert_valid_from and day < person.cert_valid_from:
        return person.cert_number, span, "证件尚未生效 not yet valid"
    return person.cert_number, span, "证件已过期 expired"


def _judged_coverage(session: Session, viewer: Officer, inspection_id: str,
                     tolerance: timedelta) -> dict[str, Any] | None:
    try:
        return inspection_coverage(session, viewer, inspection_id, tolerance=tolerance)
    except NotFound:  # an inspection filed outside the exporter's region: the export must not fail for it
        return None


def _coverage(c: dict[str, Any] | None) -> str:
    if c is None:
        return "未判定（不在导出人辖区）not judged: outside the exporter's jurisdiction"
    text = f"{_say(COVERAGE, c['status'])}: 覆盖 covered {c['covered_seconds']:g} s ({c['ratio']:.2%})"
    if c["gaps"]:
        unexplained = sum(1 for g in c["gaps"] if not g["explained"])
        text += f"; 缺口 gaps {len(c['gaps'])}, 未说明 unexplained {unexplained}"
    missing = sum(g["missing_count"] for g in c["clip_index_gaps"])
    if missing:
        text += f"; 缺失片段 missing clips {missing}"
    if c["clip_chain_breaks"]:
        text += f"; 片段哈希链断裂 clip chain breaks {len(c['clip_chain_breaks'])}"
    return text


def build(session: Session, viewer: Officer, manifest: dict[str, Any], *,
          tolerance: timedelta = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The list of a package as plain data: `title`, `header` pairs, `officers`, `inspections`, and `items`.

    Each item is `{"row": [one value per ITEM_COLUMNS], "custody": [rows of CUSTODY_COLUMNS],
    "crew": str}`; every value is text ready to print. `viewer` is the exporter, whose jurisdiction the
    coverage is read in (the package was already scoped to it).
    """
    case, pkg, items = manifest["case"], manifest["package"], manifest["evidence"]
    institution = case.get("institution") or {}
    inspections = manifest["inspections"]
    ids = [i["id"] for i in items]
    rows = {e.id: e for chunk in _chunks(ids) for e in session.scalars(select(Evidence).where(Evidence.id.in_(chunk)))}
    uploads: dict[str, Upload] = {}
    for chunk in _chunks(ids):
        for u in session.scalars(select(Upload).where(Upload.evidence_id.in_(chunk))
                                 .order_by(Upload.created_at, Upload.id)):
            held = uploads.get(u.evidence_id)
            if held is None or held.status != "verified":  # the upload whose bytes are the evidence, else the last
                uploads[u.evidence_id] = u
    leaves = {i["id"]: [json.loads(e["leaf"]) for e in i["custody_events"]] for i in items}
    wanted = {pkg["created_by"], *(o for i in inspections for o in i.get("officers") or []),
              *(i["officer"] for i in items), *(i.get("custody_holder") for i in items),
              *(leaf.get(k) for events in leaves.values() for leaf in events for k in ("actor", "from", "to"))}
    people = {o.id: o for chunk in _chunks(w for w in wanted if isinstance(w, str))
              for o in session.scalars(select(Officer).where(Officer.id.in_(chunk)))}
    coverage = {i["id"]: _judged_coverage(session, viewer, i["id"], tolerance) for i in inspections}

    def name(officer_id: str | None) -> str:
        person = people.get(officer_id or "")
        return person.name if person else "系统 system (fieldcase)" if officer_id == "fieldcase" else officer_id or ""

    def certified(officer_id: str, day: date | None) -> str:
        number, _, verdict = _certificate(people.get(officer_id), day)
        return f"{name(officer_id)} (执法证 {number}, {verdict})" if number else f"{name(officer_id)} ({verdict})"

    officers: list[list[str]] = []
    seen: set[tuple[str, date | None]] = set()

    def judged(officer_id: str, day: date | None, role: str) -> None:
        if (officer_id, day) not in seen:
            seen.add((officer_id, day))
            number, span, verdict = _certificate(people.get(officer_id), day)
            officers.append([name(officer_id), officer_id, number, span, str(day or ""), verdict, role])

    crews: dict[str, str] = {}
    inspection_rows = []
    for i in inspections:
        day = _day(i["started_at"])
        crew = list(dict.fromkeys(i.get("officers") or []))
        for officer_id in crew:
            judged(officer_id, day, "检查人员 inspection officer")
        crews[i["id"]] = "; ".join(certified(o, day) for o in crew)
        inspection_rows.append([i["id"], local(i["started_at"]), local(i["ended_at"]), _place(i.get("location")),
                                crews[i["id"]], _say(OUTCOMES, i.get("outcome")), _coverage(coverage[i["id"]])])

    listed = []
    for i in items:
        row, upload = rows.get(i["id"]), uploads.get(i["id"])
        judged(i["officer"], _day(i["captured_at"]), "采集人 captured evidence")
        gone = f"保存期满已删除 deleted under retention {local(i.get('deleted_at'))}".rstrip()
        file = i["file"] or (f"（{gone}）" if i["status"] == "deleted" else "（未随包提供 not included）")
        clip = row.clip if row else None
        recording = ""
        if clip or i["kind"] == "video":
            known = (i.get("inspection_id") or "") in coverage
            recording = (f"检查 inspection: {_coverage(coverage[i['inspection_id']])}" if known
                         else "不属于本案检查 not part of an inspection of this case")
            if clip:
                recording = (f"摄像机 camera {clip['camera_serial']} #{clip['clip_index']}, "
                             f"{local(clip['started_at'])} – {local(clip['ended_at'])}; {recording}")
        custody = []
        for leaf in leaves[i["id"]]:
            said = [f"{label}: {name(leaf[k]) if k in ('from', 'to') else leaf[k]}"
                    for k, label in DETAILS if leaf.get(k)]
            custody.append([local(leaf["at"]), name(leaf["actor"]), _say(ACTIONS, leaf["action"]), "; ".join(said)])
        listed.append({"crew": crews.get(i.get("inspection_id") or "", ""), "custody": custody, "row": [
            str(i["item"]), f"{_say(KINDS, i['kind'])} · {i['media_type']}", file, i["sha256"], str(i["size"]),
            local(i["captured_at"]), _place(row.location if row else None), i["device"],
            certified(i["officer"], _day(i["captured_at"])),
            local(upload.created_at) if upload else "", local(upload.completed_at) if upload else "",
            local(row.verified_at) if row else "", _say(STATUSES, i["status"]), name(i.get("custody_holder")),
            recording, i.get("inspection_id") or ""]})

    head = manifest["custody"]["tree_head"]
    header: list[tuple[Label, str]] = [
        (("案件编号", "Case"), case["id"]),
        (("被检查单位", "Institution"), institution.get("name") or ""),
        (("统一社会信用代码", "Unified social credit code"),
         institution.get("credit_code") or "（未登记 not recorded）"),
        (("单位地址", "Address"), institution.get("address") or ""),
        (("导出时间", "Exported at"), local(pkg["created_at"])),
        (("导出人", "Exported by"), name(pkg["created_by"])),
        (("用途", "Purpose"), pkg["purpose"]),
        (("包编号", "Package"), pkg["id"]),
        (("保管日志树头", "Custody tree head"), f"{head['tree_size']} · {head['root_hash']} · {head['key_id']} · "
                                                f"{local(head['timestamp'])}"),
        (("时间", "Times"), "北京时间 Beijing time (UTC+08:00)"),
        (("录像缺口容差", "Coverage tolerance"), f"{tolerance.total_seconds():g} s"),
    ]
    return {"title": ("电子数据清单", "Evidence list"), "case_id": case["id"], "header": header,
            "officers": officers, "inspections": inspection_rows, "items": listed,
            "context": [case["id"], institution.get("name") or "", institution.get("credit_code") or ""]}


def to_csv(listing: dict[str, Any]) -> str:
    """One row per item; UTF-8 with a BOM (the caller encodes) so spreadsheet programs read the Chinese."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([f"{zh} {en}".strip() for zh, en in ITEM_COLUMNS + CSV_EXTRA])
    for item in listing["items"]:
        history = "\n".join(" · ".join(v for v in event if v) for event in item["custody"])
        writer.writerow([*item["row"], history, item["crew"], *listing["context"]])
    return buf.getvalue()


def _blocks(listing: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """The document both HTML and PDF lay out: title, pairs, headings and tables, in order."""
    yield "title", listing["title"]
    yield "pairs", listing["header"]
    yield "heading", ("执法人员", "Officers")
    yield "table", OFFICER_COLUMNS, listing["officers"]
    yield "heading", ("检查", "Inspections")
    yield "table", INSPECTION_COLUMNS, listing["inspections"]
    yield "heading", ("电子数据", "Evidence items")
    for item in listing["items"]:
        yield "subheading", (f"第 {item['row'][0]} 项", f"Item {item['row'][0]}")
        yield "pairs", list(zip(ITEM_COLUMNS[1:], item["row"][1:], strict=True))
        yield "caption", ("监管记录", "Custody history")
        yield "table", CUSTODY_COLUMNS, item["custody"]
    yield "note", NOTE


def to_html(listing: dict[str, Any]) -> str:
    """One self-contained page: no script, no external resource; every value escaped."""
    e = html.escape

    def label(lab: Label, tag: str) -> str:
        return f"<{tag}>{e(lab[0])}" + (f"<br><span class=en>{e(lab[1])}</span>" if lab[1] else "") + f"</{tag}>"

    def cell(value: str, lab: Label | None = None) -> str:
        mono = ' class="mono"' if lab and lab[0] == "SHA-256" else ""
        return f"<td{mono}>{e(value).replace(chr(10), '<br>')}</td>"

    parts = []
    for block in _blocks(listing):
        kind = block[0]
        if kind in ("title", "heading", "subheading", "caption"):
            tag = {"title": "h1", "heading": "h2", "subheading": "h3", "caption": "h4"}[kind]
            parts.append(label(block[1], tag))
        elif kind == "pairs":
            parts.append('<table class="pairs">' + "".join(
                f"<tr>{label(lab, 'th')}{cell(value, lab)}</tr>" for lab, value in block[1]) + "</table>")
        elif kind == "table":
            head = "".join(label(lab, "th") for lab in block[1])
            body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>\n" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>")
        else:
            parts.append(f'<p class="note">{e(block[1])}</p>')
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>电子数据清单 Evidence list {e(listing["case_id"])}</title>
<style>body{{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei","PingFang SC",sans-serif;
margin:2em}} table{{border-collapse:collapse;margin:.5em 0 1em}} td,th{{border:1px solid #999;padding:3px 6px;
font-size:13px;text-align:left;vertical-align:top}} th{{background:#eee;font-weight:600}} .en{{font-weight:normal;
color:#555;font-size:11px}} .mono{{font-family:monospace}} .pairs th{{width:12em}} h3{{margin-top:1.5em}}</style>
</head><body>
{body}
</body></html>
"""


CID_FONT = "STSong-Light"
EMBEDDED_FONT = "FieldcaseCJK"
# CJK fonts with TrueType outlines (reportlab embeds no CFF-outlined OpenType): (file, face in a collection).
FONT_FILES: tuple[tuple[str, int], ...] = (("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
                                           ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0))


@functools.cache
def pdf_font() -> str:
    """The registered font the PDF is set in: the first installed of FONT_FILES, embedded; else STSong-Light."""
    for path, face in FONT_FILES:
        if Path(path).is_file():
            try:
                pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, path, subfontIndex=face))
            except Exception as exc:  # a damaged or unsupported file: try the next one
                log.warning("cannot use %s for the evidence list PDF: %s", path, exc)
                continue
            return EMBEDDED_FONT
    log.warning("no CJK TrueType font installed (%s): the evidence list PDF names STSong-Light and embeds no "
                "glyphs; install fonts-wqy-zenhei", ", ".join(p for p, _ in FONT_FILES))
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
    return CID_FONT


def to_pdf(listing: dict[str, Any]) -> bytes:
    """A4 portrait, the same blocks as the HTML page; page numbers in the footer."""
    font = pdf_font()
    # Lines break at spaces, and a run longer than its cell (Chinese has no spaces) is split where it must be:
    # wordWrap="CJK" would split "expired" or "08:00" anywhere too.
    base = ParagraphStyle("base", fontName=font, fontSize=8, leading=10.5, splitLongWords=1)

    def style(name: str, size: float, leading: float, before: float = 0, after: float = 0) -> ParagraphStyle:
        return ParagraphStyle(name, parent=base, fontSize=size, leading=leading, spaceBefore=before,
                              spaceAfter=after, keepWithNext=int(bool(before)))  # a heading stays with its table

    styles = {"title": style("title", 18, 24, 0, 6), "heading": style("heading", 13, 17, 10, 4),
              "subheading": style("sub", 10.5, 14, 8, 2), "caption": style("caption", 8.5, 11, 6, 2)}
    head_style, note_style = style("th", 7.5, 9.5), style("note", 7.5, 10)
    width = A4[0] - 30 * mm
    widths = {OFFICER_COLUMNS: (0.9, 1.9, 1.3, 1.5, 1, 1.2, 1.1), CUSTODY_COLUMNS: (1.5, 1.2, 1.2, 3),
              INSPECTION_COLUMNS: (1.2, 1.65, 1.65, 1.2, 2.1, 0.9, 1.8)}  # a time's "12:00:00+08:00" on one line

    def para(text: str, style: ParagraphStyle = base) -> Paragraph:
        return Paragraph(xml_escape(text).replace("\n", "<br/>"), style)

    def heading(lab: Label, style: ParagraphStyle) -> Paragraph:
        en = f'<br/><font size="{style.fontSize * 0.7:g}" color="#555555">{xml_escape(lab[1])}</font>' if lab[1] else ""
        return Paragraph(xml_escape(lab[0]) + en, style)

    def table(data: list[list[Any]], cols: list[float], header: bool) -> Table:
        t = Table(data, colWidths=cols, repeatRows=1 if header else 0, hAlign="LEFT")
        shaded = (-1, 0) if header else (0, -1)  # the header row, or the labels' column
        t.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), font),  # else cells set Helvetica, unembedded
                               ("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 0), shaded, colors.HexColor("#eeeeee"))]))
        return t

    story: list[Any] = []
    for block in _blocks(listing):
        kind = block[0]
        if kind in styles:
            story.append(heading(block[1], styles[kind]))
        elif kind == "pairs":
            story.append(table([[heading(lab, head_style), para(value)] for lab, value in block[1]],
                               [32 * mm, width - 32 * mm], header=False))
        elif kind == "table":
            weights = widths[block[1]]
            cols = [width * w / sum(weights) for w in weights]
            rows = block[2] or [["—"] + [""] * (len(block[1]) - 1)]
            story.append(table([[heading(lab, head_style) for lab in block[1]],
                                *([para(v) for v in row] for row in rows)], cols, header=True))
        else:
            story += [Spacer(1, 12), para(block[1], note_style)]

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.drawString(15 * mm, 8 * mm, f"电子数据清单 Evidence list · 案件 Case {listing['case_id']}")
        canvas.drawRightString(A4[0] - 15 * mm, 8 * mm, f"第 {doc.page} 页 Page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=14 * mm,
                            bottomMargin=15 * mm, title=f"电子数据清单 {listing['case_id']}", author="fieldcase",
                            subject="电子数据清单 Evidence list", lang="zh-CN", displayDocTitle=True,
                            initialFontName=font)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
