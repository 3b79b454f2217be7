"""The console's words in Chinese (the default) and English: a plain table, no gettext toolchain to run.

Custodians and reviewers in Hangzhou read Chinese; English is there for
visitors, auditors from elsewhere and the developers. A key missing from the
table shows as the key itself, so a forgotten entry is visible, never an error.
Codes that the reference data names (regions, departments, violation
categories) come from the database's own `name_zh` / `name_en` instead.

The lookup is here; the table is in four parts, the page words (`text.TEXT`),
the in-browser verifier's (`verification.VERIFY`), the clue pages'
(`clues.CLUES`) and the names of codes (`codes.CODES`), so that none is past
the house limit.
"""

from __future__ import annotations

from typing import Any

from backend.web.console.i18n.clues import CLUES
from backend.web.console.i18n.codes import CODES
from backend.web.console.i18n.text import TEXT
from backend.web.console.i18n.verification import VERIFY

__all__ = ["CLUES", "CODES", "DEFAULT_LANGUAGE", "HTML_LANG", "LANGUAGES", "TEXT", "VERIFY", "code", "translate"]

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}


def translate(key: str, language: str, **values: Any) -> str:
    """The text for `key` in `language`, with `{name}` placeholders filled; the key itself when unknown."""
    entry = TEXT.get(key) or VERIFY.get(key) or CLUES.get(key) or CODES.get(key)
    text = key if entry is None else (entry[0] if language == "zh" else entry[1])
    return text.format(**values) if values else text


def code(prefix: str, value: str | None, language: str) -> str:
    """A code's name (`status`, `registered` -> 立案); an unknown code shows as itself, so nothing is hidden."""
    if value is None:
        return ""
    entry = CODES.get(f"{prefix}.{value}")
    if entry is None:
        return value
    return entry[0] if language == "zh" else entry[1]
