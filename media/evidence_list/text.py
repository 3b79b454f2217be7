"""The evidence list as CSV (one row per item) and as one self-contained HTML page."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterator
from typing import Any

from media.evidence_list.build import (
    CSV_EXTRA,
    CUSTODY_COLUMNS,
    INSPECTION_COLUMNS,
    ITEM_COLUMNS,
    NOTE,
    OFFICER_COLUMNS,
    Label,
)


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


def blocks(listing: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
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
        mono = ' class="mono"' if lab and lab[0] in ("SHA-256", "SM3") else ""
        return f"<td{mono}>{e(value).replace(chr(10), '<br>')}</td>"

    parts = []
    for block in blocks(listing):
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
