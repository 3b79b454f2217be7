"""The reference data a phone checks records against before it signs, fetched when online and kept for offline.

An officer in a basement with no signal must still be told that a category code is not in the catalogue or that a
colleague's certificate expired, so the phone keeps its own copy: the codes of PROTOCOL §9 (``GET
/api/v1/reference``: regions, departments, the violation catalogue) and the certificates of the officers who may
stand in a crew (``GET /api/v1/reference/officers``). Both are stored in the outbox file with the time they were
fetched; a part the server did not give (an older server without the officers' list) stays missing, and the checks
that need it say they could not be made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sync.client.outbox import Outbox
from sync.client.transport import ApiError, Transport
from sync.client.wire import CREW_PATH, REFERENCE_PATH, compact_json

META_KEY = "reference"


@dataclass(frozen=True)
class Reference:
    """The cached reference data, by code (and officers by id); ``officers`` is None when the server gave none."""

    regions: dict[str, dict[str, Any]]
    departments: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    officers: dict[str, dict[str, Any]] | None
    fetched_at: str

    @classmethod
    def _from_stored(cls, stored: dict[str, Any]) -> Reference:
        doc = stored.get("reference") or {}
        officers = stored.get("officers")
        return cls(regions={r["code"]: r for r in doc.get("regions") or []},
                   departments={d["code"]: d for d in doc.get("departments") or []},
                   categories={c["code"]: c for c in doc.get("violation_categories") or []},
                   officers=None if officers is None else {o["id"]: o for o in officers},
                   fetched_at=str(stored.get("fetched_at") or ""))


def fetch(http: Transport, outbox: Outbox) -> Reference:
    """Download both parts and replace the cached copy; an error leaves the old copy as it was."""
    document = http.api("GET", REFERENCE_PATH)
    try:
        officers = list(http.api("GET", CREW_PATH).get("officers") or [])
    except ApiError as exc:
        if exc.status != 404:  # a server from before the officers' list: certificates stay unchecked
            raise
        officers = None
    stored = {"reference": document, "officers": officers, "fetched_at": outbox.stamp()}
    outbox.set(META_KEY, compact_json(stored).decode("utf-8"))
    return Reference._from_stored(stored)


def load(outbox: Outbox) -> Reference | None:
    """The cached copy, or None when this phone never fetched one."""
    text = outbox.get(META_KEY)
    return None if text is None else Reference._from_stored(json.loads(text))
