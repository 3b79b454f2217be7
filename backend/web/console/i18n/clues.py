"""The clue pages' words, in Chinese and English: the clue list, a clue and its masked complainant, the unmasking
form and the log of unmaskings.

Kept apart from the other page words (`text`) so that neither table is past the house limit; the lookup
(`translate`) reads them all. Clue statuses and sources, and the complainant's fields, are codes (`codes`).
"""

from __future__ import annotations

# key -> (中文, English)
CLUES: dict[str, tuple[str, str]] = {
    "nav.clues": ("线索", "Clues"),
    "nav.unmaskings": ("个人信息查看记录", "Personal data views"),
    "clues.title": ("线索", "Clues"),
    "clues.filters": ("线索筛选", "Clue filters"),
    "clue.title": ("线索", "Clue"),
    "clue.reported": ("收到时间", "Reported"),
    "clue.source": ("来源", "Source"),
    "clue.category": ("违法类别", "Violation category"),
    "clue.tracking_code": ("查询码", "Tracking code"),
    "clue.duplicate_of": ("重复于", "Duplicate of"),
    "clue.case": ("案件", "Case"),
    "clue.outcome": ("办理结果", "Outcome"),
    "clue.transfers": ("移交", "Transfers"),
    "clue.complainant": ("举报人", "Complainant"),
    "clue.complainant.none": ("举报人未留个人信息。", "The complainant left no personal data."),
    "clue.complainant.not_handler": ("举报人信息仅对承办该线索的人员显示。",
                                     "The complainant is shown only to those who handle this clue."),
    "clue.complainant.masked": ("个人信息已脱敏显示。", "Personal data is shown masked."),
    "unmask.legend": ("查看明文", "Show in clear"),
    "unmask.purpose": ("查看用途", "Purpose"),
    "unmask.submit": ("查看明文", "Show in clear"),
    "unmask.note": ("每次查看明文都会记录查看人、字段、用途和时间，供审核人员查阅。",
                    "Each view in clear is recorded (who, which fields, the purpose, when) for reviewers."),
    "unmask.purpose_missing": ("请填写查看用途。", "State the purpose of the view."),
    "unmask.shown": ("明文显示，用途：{purpose}（{at} 已记录）。", "Shown in clear for: {purpose} (recorded at {at})."),
    "unmask.hide": ("恢复脱敏显示", "Show masked again"),
    "unmaskings.title": ("个人信息查看记录", "Personal data views"),
    "unmaskings.intro": ("谁在何时、为何用途查看了哪条线索举报人的哪些个人信息（辖区内）。",
                         "Who saw which complainant's data in clear, when and why (within your jurisdiction)."),
    "unmaskings.filters": ("查看记录筛选", "Filters of the views"),
    "unmaskings.clue": ("线索", "Clue"),
    "unmaskings.by": ("查看人", "Viewed by"),
    "unmaskings.fields": ("字段", "Fields"),
}
