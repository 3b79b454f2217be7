"""How an institution's name is compared: one rule for the registry's search, the phones' merge and the package
verifier, which must agree on when two spellings name the same institution."""

from __future__ import annotations

import re
import unicodedata


def normalise_name(name: str) -> str:
    """Fold width, case, spaces and punctuation so 'ABC 培训（西湖）' and 'abc培训(西湖)' match."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"[\s\W_]+", "", text)
