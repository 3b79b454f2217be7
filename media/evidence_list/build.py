"""The evidence list as plain data, built from the manifest and the rows it does not carry (see the package)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import NotFound
from backend.core.models import Evidence, Officer, Upload
from backend.core.times import LOCAL_TZ
from media.coverage import DEFAULT_TOLERANCE, inspection_coverage
from sync.certificate_history import CertificateBook
from sync.certificates import EXPIRED, NO_CERTIFICATE, NOT_YET_VALID, officer_certificate_fault

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
           "exported": ("导出", "exported"), "deleted": ("保存期满删除", "deleted under retention"),
           "digest_added": ("补算摘要", "digest added")}
COVERAGE = {"complete": ("完整", "complete"), "explained": ("缺口已说明", "gaps explained"),
            "gaps": ("有缺口", "gaps"), "none": ("无录像", "no recording"), "open": ("检查未结束", "open")}
OUTCOMES = {"no_violation": ("未发现违规", "no violation"), "violation_found": ("发现违规", "violation found"),
            "rectification_ordered": ("责令整改", "rectification ordered"),
            "not_inspected": ("未检查", "not inspected")}
DETAILS = (("purpose", "用途 purpose"), ("reason", "理由 reason"), ("from", "移交人 from"), ("to", "接收人 to"),
           ("note", "备注 note"), ("package", "包 package"))

ITEM_COLUMNS: tuple[Label, ...] = (
    ("序号", "Item"), ("类型", "Kind"), ("文件名", "File"), ("SHA-256", ""), ("SM3", ""),
    ("大小(字节)", "Size (bytes)"),
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
        "每个文件的 SHA-256 亦可用任何工具（如 sha256sum）核对，SM3 可用 openssl dgst -sm3 核对。"
        " To verify offline: fieldcase verify-package FILE --public-key KEY; each file's SHA-256 can also be "
        "checked with any tool, e.g. sha256sum, and its SM3 with openssl dgst -sm3.")
_IN_CHUNK = 500


def _digest(value: str | None) -> str:
    """A digest of the file, or why there is none: not declared (the phone declared the other one) and not yet
    computed (the bytes were never verified), or an item verified before the server computed SM3."""
    return value or "（未计算 not computed）"


def _sm3(item: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The file's SM3: the item's, when its phone declared one; else the one the server computed of the bytes, as
    the item's `verified` custody event in the package records it, or, for an item verified before the server
    computed SM3, its `digest_added` event (`fieldcase evidence backfill-sm3`); none before that."""
    return item.get("sm3") or next((e["sm3"] for e in events
                                    if e.get("action") in ("verified", "digest_added") and e.get("sm3")), None)


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


_VERDICTS = {None: "有效 valid", NO_CERTIFICATE: "无证 no certificate", NOT_YET_VALID: "证件尚未生效 not yet valid",
             EXPIRED: "证件已过期 expired"}


def _certificate(person: Officer | None, day: date | None, book: CertificateBook) -> tuple[str, str, str]:
    """(number, validity, verdict on `day`) of the certificate held that day (`sync.certificate_history`), the
    verdict in the audit's terms (`expired_certificate`)."""
    if person is None:
        return "", "", "未知人员 unknown officer"
    held = book.held_on(person, day) if day is not None else person
    if not held.cert_number:
        return "", "", "无证 no certificate"
    span = f"{held.cert_valid_from or '…'} 至 {held.cert_valid_until or '…'}"
    if day is None:  # no day to judge on: a certificate with an end date cannot be shown valid
        fault = EXPIRED if held.cert_valid_until else NO_CERTIFICATE
    else:
        fault = officer_certificate_fault(held, day)
    return held.cert_number, span, _VERDICTS[fault]


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
    book = CertificateBook.load(session, people.values())
    coverage = {i["id"]: _judged_coverage(session, viewer, i["id"], tolerance) for i in inspections}

    def name(officer_id: str | None) -> str:
        person = people.get(officer_id or "")
        return person.name if person else "系统 system (fieldcase)" if officer_id == "fieldcase" else officer_id or ""

    def certified(officer_id: str, day: date | None) -> str:
        number, _, verdict = _certificate(people.get(officer_id), day, book)
        return f"{name(officer_id)} (执法证 {number}, {verdict})" if number else f"{name(officer_id)} ({verdict})"

    officers: list[list[str]] = []
    seen: set[tuple[str, date | None]] = set()

    def judged(officer_id: str, day: date | None, role: str) -> None:
        if (officer_id, day) not in seen:
            seen.add((officer_id, day))
            number, span, verdict = _certificate(people.get(officer_id), day, book)
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
            str(i["item"]), f"{_say(KINDS, i['kind'])} · {i['media_type']}", file, _digest(i.get("sha256")),
            _digest(_sm3(i, leaves[i["id"]])), str(i["size"]),
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
