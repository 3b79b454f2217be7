"""How personal data is shown: masked, in every answer and on every console page (COMPLIANCE §3, PIPL).

The one home of the masking rule, so an API answer, a phone-number look-up and a console page all show the same
张＊＊ and 138****5678. Clear values are shown only through an unmasking, which states its purpose and is recorded
(backend.casework.personal_data). The rule, field by field (docs/protocol.md, "Complainants masked"):

- `name`: its first character, then ＊ (U+FF0A) for each further one (`张三丰` → `张＊＊`); one character → `＊`;
- `phone`: its digits alone (as the blind index reads them: `phone_digits`), the first 3 and the last 4 kept and
  `*` for each digit between (`138-1234 5678` → `138****5678`); fewer than 8 digits → `*` for every digit;
- any other text (`email`, `address`): its first character, then ＊＊＊＊ whatever its length (an address's
  length would say more than a name's);
- `anonymous`, a flag and not personal data, as it is; a missing or null value stays so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from backend.core.crypto.sealed_fields import phone_digits

# A complainant's fields that are personal data, in the order an unmasking names them.
PERSONAL_FIELDS = ("name", "phone", "email", "address")
NAME_MASK = "＊"
PHONE_MASK = "*"
PHONE_HEAD, PHONE_TAIL = 3, 4
TEXT_MASK = NAME_MASK * 4


def mask_name(text: str) -> str:
    name = text.strip()
    if len(name) <= 1:
        return NAME_MASK * len(name)
    return name[0] + NAME_MASK * (len(name) - 1)


def mask_phone(text: str) -> str:
    digits = phone_digits(text)
    hidden = len(digits) - PHONE_HEAD - PHONE_TAIL
    if hidden < 1:
        return PHONE_MASK * len(digits)
    return digits[:PHONE_HEAD] + PHONE_MASK * hidden + digits[-PHONE_TAIL:]


def mask_text(text: str) -> str:
    value = text.strip()
    return value[0] + TEXT_MASK if value else ""


RULES: dict[str, Callable[[str], str]] = {"name": mask_name, "phone": mask_phone}


def mask_value(field: str, value: Any) -> Any:
    """One field of a complainant as it is shown masked; anything stored other than text is masked as its text."""
    if value is None or isinstance(value, bool):
        return value
    return RULES.get(field, mask_text)(value if isinstance(value, str) else str(value))


def mask_complainant(complainant: dict[str, Any] | None) -> dict[str, Any] | None:
    """The complainant as every answer shows them: each field masked, the same keys as stored."""
    if complainant is None:
        return None
    return {field: mask_value(field, value) for field, value in complainant.items()}


def reveal(complainant: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The complainant with `fields` in clear and the rest masked: what an unmasking answers."""
    clear = set(fields)
    return {field: value if field in clear else mask_value(field, value) for field, value in complainant.items()}
