"""Pulling the change feed (PROTOCOL §5) into the phone's local copy, page by page.

The feed tells the phone what changed on the server that it may see: cases and their aliases, institutions,
evidence verdicts. Each page is stored with its cursor in one transaction, so an interrupted pull resumes where
it stopped; a cursor the server no longer knows (``410``) means starting over from an empty copy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sync.client.outbox import Outbox
from sync.client.transport import Transport
from sync.client.wire import PULL_PATH, compact_json

log = logging.getLogger("fieldcase.phone")


def pull(http: Transport, outbox: Outbox, limit: int = 100) -> list[dict[str, Any]]:
    """Page through the server's changes into the local copy; the cursor is saved with each page."""
    limit = max(1, min(int(limit), 500))
    received: list[dict[str, Any]] = []
    restarted = False
    cursor = outbox.pull_cursor
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        resp = http.call("GET", PULL_PATH, params=params)
        if resp.status_code == 410 and cursor and not restarted:
            # The server forgot our place: start over and rebuild the local copy from scratch.
            restarted = True
            cursor = None
            received = []
            with outbox.tx() as db:
                db.execute("DELETE FROM changes")
                outbox.set("pull_cursor", None)
            continue
        payload = http.json(resp)
        changes = list(payload.get("changes") or [])
        new_cursor = payload.get("cursor") or cursor
        with outbox.tx():
            for change in changes:
                _store_change(outbox, change)
            if new_cursor:
                outbox.set("pull_cursor", str(new_cursor))
        received.extend(changes)
        if not payload.get("has_more"):
            break
        if not changes and new_cursor == cursor:
            log.warning("pull: has_more without progress; stopping")
            break
        cursor = new_cursor
    return received


def _store_change(outbox: Outbox, change: Mapping[str, Any]) -> None:
    kind, ident = str(change.get("kind")), str(change.get("id"))
    data = change.get("data") or {}
    with outbox.tx() as db:
        if change.get("op") == "delete":
            db.execute("DELETE FROM changes WHERE kind = ? AND id = ?", (kind, ident))
        else:
            db.execute("INSERT INTO changes (kind, id, data, received_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, "
                       "received_at = excluded.received_at",
                       (kind, ident, compact_json(data).decode("utf-8"), outbox.stamp()))
            if kind == "evidence" and isinstance(data, Mapping):
                outbox.note_evidence_status(ident, data)
