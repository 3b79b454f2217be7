"""The names of codes shown to people, in Chinese and English: statuses, roles, outcomes, kinds, actions, flags.

A code is looked up as `prefix.value` (`status.registered` -> 立案) by the
package's `code`, which shows an unknown code as itself. Words that are not
codes are in `text`.
"""

from __future__ import annotations

# Codes shown to people: statuses, roles, outcomes, kinds, actions, flags.
CODES: dict[str, tuple[str, str]] = {
    # case statuses
    "status.clue": ("线索", "clue"),
    "status.registered": ("立案", "registered"),
    "status.investigating": ("调查取证", "investigating"),
    "status.legal_review": ("法制审核", "legal review"),
    "status.notified": ("告知", "notified"),
    "status.decided": ("决定", "decided"),
    "status.executed": ("执行", "executed"),
    "status.closed": ("结案", "closed"),
    "status.not_penalised": ("不予处罚", "not penalised"),
    "status.transferred": ("移送", "transferred"),
    "status.dismissed": ("撤销", "dismissed"),
    # roles
    "role.officer": ("执法人员", "officer"),
    "role.custodian": ("证据保管员", "custodian"),
    "role.reviewer": ("审核员", "reviewer"),
    "role.legal_reviewer": ("法制审核员", "legal reviewer"),
    "role.admin": ("管理员", "admin"),
    # evidence
    "evidence.declared": ("已申报", "declared"),
    "evidence.verified": ("已核验", "verified"),
    "evidence.mismatch": ("哈希不符", "mismatch"),
    "evidence.deleted": ("保存期满已删除", "deleted under retention"),
    "kind.photo": ("照片", "photo"),
    "kind.video": ("视频", "video"),
    "kind.audio": ("录音", "audio"),
    "kind.document": ("文书", "document"),
    "kind.signature": ("签名", "signature"),
    # coverage
    "coverage.complete": ("完整", "complete"),
    "coverage.explained": ("缺口已说明", "gaps explained"),
    "coverage.gaps": ("有缺口", "gaps"),
    "coverage.none": ("无录像", "no recording"),
    "coverage.open": ("检查未结束", "open"),
    # institutions
    "licence.licensed": ("已取得许可", "licensed"),
    "licence.unlicensed": ("无证", "unlicensed"),
    "licence.suspended": ("暂停", "suspended"),
    "licence.revoked": ("已吊销", "revoked"),
    "licence.expired": ("已过期", "expired"),
    "licence.unknown": ("未知", "unknown"),
    "risk.low": ("低", "low"),
    "risk.medium": ("中", "medium"),
    "risk.high": ("高", "high"),
    # inspection outcomes
    "outcome.no_violation": ("未发现违规", "no violation"),
    "outcome.violation_found": ("发现违规", "violation found"),
    "outcome.rectification_ordered": ("责令整改", "rectification ordered"),
    "outcome.not_inspected": ("未检查", "not inspected"),
    # ledger
    "ledger.applied": ("已应用", "applied"),
    "ledger.invalid": ("内容无效", "invalid"),
    "ledger.conflict": ("冲突", "conflict"),
    # conflicts
    "conflict.open": ("待处理", "open"),
    "conflict.resolved": ("已处理", "resolved"),
    # custody actions
    "action.declared": ("申报", "declared"),
    "action.upload_started": ("开始上传", "upload started"),
    "action.verified": ("核验通过", "verified"),
    "action.mismatch": ("哈希不符", "mismatch"),
    "action.read": ("读取原件", "read"),
    "action.thumbnail": ("生成缩略图", "thumbnail made"),
    "action.transfer_requested": ("申请移交", "transfer requested"),
    "action.transferred": ("已移交", "transferred"),
    "action.transfer_refused": ("拒收", "transfer refused"),
    "action.exported": ("导出", "exported"),
    "action.deleted": ("保存期满删除", "deleted under retention"),
    # audit kinds
    "audit.coverage_gap": ("录像缺口", "coverage gap"),
    "audit.no_recording": ("无录像", "no recording"),
    "audit.inspection_not_ended": ("检查未结束", "inspection not ended"),
    "audit.evidence_mismatch": ("证据哈希不符", "evidence mismatch"),
    "audit.upload_overdue": ("上传逾期", "upload overdue"),
    "audit.exif_disagreement": ("EXIF 与申报不符", "EXIF disagreement"),
    "audit.too_few_certified": ("持证人员不足两人", "fewer than two certified officers"),
    "audit.expired_certificate": ("执法证无效", "certificate not valid"),
    "audit.clock_skew": ("设备时钟超前", "clock skew"),
    "audit.rejected_records": ("被拒记录", "rejected records"),
    "audit.fork": ("记录链分叉", "fork"),
    "audit.chain_gap": ("记录链缺口", "chain gap"),
    "audit.open_conflict": ("未处理冲突", "open conflict"),
    "audit.needs_correction": ("待更正", "needs correction"),
    # links of audit issues
    "rel.inspection": ("检查", "inspection"),
    "rel.coverage": ("全过程记录", "coverage"),
    "rel.case": ("案件", "case"),
    "rel.evidence": ("证据", "evidence"),
    "rel.custody": ("保管记录", "custody"),
    "rel.device": ("设备", "device"),
    "rel.officer": ("人员", "officer"),
    "rel.conflict": ("冲突", "conflict"),
    "rel.resolve": ("处理冲突", "resolve"),
    "rel.released_by": ("放行人", "released by"),
    # flags
    "flag.fewer_than_two_certified": ("持证人员不足两人", "fewer than two certified"),
    "flag.unknown_officer": ("未知人员", "unknown officer"),
    "flag.owner_not_present": ("设备所有人不在场", "device owner not present"),
    "flag.clock_ahead": ("时钟超前", "clock ahead"),
    "flag.longer_than_12h": ("超过 12 小时", "longer than 12 h"),
    "flag.ends_before_start": ("结束早于开始", "ends before start"),
    "flag.not_ended_after_12h": ("12 小时后仍未结束", "not ended after 12 h"),
    "flag.task_mismatch": ("任务不符", "task mismatch"),
    "flag.override": ("越过手机核对签名", "signed over the phone's checks"),
    "flag.needs_correction": ("待更正", "needs correction"),
    "flag.unknown_evidence": ("引用未知证据", "cites unknown evidence"),
    "flag.unknown_inspection": ("未知检查", "unknown inspection"),
    "flag.exif_time_differs": ("EXIF 时间不符", "EXIF time differs"),
    "flag.gps_differs": ("GPS 位置不符", "GPS position differs"),
    "flag.no_exif": ("无 EXIF", "no EXIF"),
    "flag.late_upload": ("逾期上传", "late upload"),
    "flag.corrupt_image": ("图片损坏", "corrupt image"),  # evidence read before `undecodable` replaced it
    "flag.undecodable": ("无法解码", "undecodable"),
    "flag.no_capture_time": ("无拍摄时间", "no capture time"),
    "flag.no_capture_place": ("无拍摄位置", "no capture place"),
    "flag.not_an_image": ("不是图片", "not an image"),
}
