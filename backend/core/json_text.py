"""What a decoded JSON value can hold that no database text column can: NUL, and lone surrogates.

JSON spells both as escapes (`\\u0000`, `\\ud800`), so any parsed request body, query string or
signed record may carry them; requests, records and the custody log all ask the same questions here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def is_unicode_text(text: str) -> bool:
    """False for a string holding a lone surrogate, which no UTF-8 text (and so no database) can store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value, object keys included.

    Walks with its own stack: a value nested as deep as the JSON parser allows must not exhaust
    Python's recursion limit here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def contains_nul(value: Any) -> bool:
    """NUL anywhere in a decoded JSON value, keys included: PostgreSQL text cannot hold it."""
    return any("\x00" in text for text in strings(value))


def contains_lone_surrogate(value: Any) -> bool:
    """A string no UTF-8 text (and so no database) can hold: JSON's `\\ud800` escape decodes to one."""
    return not all(is_unicode_text(text) for text in strings(value))
