"""The custody log's bytes: leaves and tree heads are RFC 8785 (JCS) canonical JSON, keys and signatures base64url.

These exact bytes are hashed and signed, so they have one home, shared by the log, its keys and its verifier.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import rfc8785

from backend.core.crypto import INTL
from backend.core.json_text import is_unicode_text


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """What `b64url` wrote, back to bytes (the padding it dropped restored)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_SAFE_INTEGER = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether JCS of `value` is exactly the standard library's sorted, compact, unescaped-Unicode JSON.

    It is for strings (minimal escapes, lower-case hex: the same rules), ASCII keys (so code-point
    and UTF-16 order agree), integers a double holds exactly, booleans and null. Anything else
    (floats above all) goes through the full RFC 8785 implementation.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_unicode_text(item):
                return False
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if abs(item) > _SAFE_INTEGER:
                return False
        elif isinstance(item, dict):
            if not all(isinstance(k, str) and k.isascii() for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            return False
    return True


def canonical(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON: the exact bytes that are hashed and signed.

    Custody leaves are written at push rates; for the plain values they hold the standard
    library's encoder gives the same bytes much faster (`tests/media/test_custody.py` checks the two
    agree), and everything else takes the full implementation.
    """
    if _plain(obj):
        return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return rfc8785.dumps(obj)


def fact_digest(value: Any) -> str:
    """How a custody leaf binds a server fact without carrying it (a case's summary may name people): the hex
    SHA-256 of the value's canonical JSON. A verifier holding the value recomputes it."""
    return INTL.hexdigest(canonical(value))
