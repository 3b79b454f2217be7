"""The evidence list as a PDF (A4, reportlab), in an embedded CJK font.

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

import functools
import io
import logging
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

from media.evidence_list.build import CUSTODY_COLUMNS, INSPECTION_COLUMNS, OFFICER_COLUMNS, Label
from media.evidence_list.text import blocks

log = logging.getLogger(__name__)


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
    for block in blocks(listing):
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
