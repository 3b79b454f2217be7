"""One evidence item: its page (metadata, EXIF against the declaration, custody history), its thumbnail, its file.

Reading an original is a custody event: the form states a purpose, the read is
committed to the custody log (`uploads.open_original`) before the first byte
leaves, and the bytes are served as the API serves them (`backend.web.served`:
sandboxed, nosniff, inline only for allow-listed picture, video and audio
types), since they come from a phone and are served from the console's own
origin. The thumbnail is derived, not the
original, so showing it logs nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, request, stream_with_context, url_for
from sqlalchemy.orm import Session

from backend.core.errors import DomainError, NotFound
from backend.core.models import CustodyHolder, Officer
from backend.web.api.context import now, state
from backend.web.api.context import session as db_session
from backend.web.console import present, security
from backend.web.console.views.frame import bp, t
from backend.web.console.views.pages import MAX_PURPOSE, back_to, flash_refusal, form_text, scoped_page
from backend.web.served import file_headers
from media import uploads
from media.store import blocks


def _evidence_item(s: Session, viewer: Officer, evidence_id: str) -> dict[str, Any]:
    return uploads.describe(s, uploads.readable_evidence(s, viewer, evidence_id))


@bp.get("/evidence/<evidence_id>")
@scoped_page("console/evidence.html", _evidence_item)
def evidence(s: Session, viewer: Officer, evidence_id: str, item: dict[str, Any]) -> dict[str, Any]:
    events = uploads.custody_history(s, viewer, evidence_id)["events"]
    holder = s.get(CustodyHolder, evidence_id)
    people = present.officer_names(s, [item["officer_id"], *(e["actor"] for e in events),
                                       holder.holder_id if holder else None, holder.pending_to if holder else None])
    device = present.devices(s, [item["device_id"]]).get(item["device_id"])
    return {"item": item, "events": events, "holder": holder, "people": people, "device": device,
            "exif": present.exif_rows(item)}


@bp.get("/evidence/<evidence_id>/thumbnail")
def thumbnail(evidence_id: str) -> Any:
    """The derived thumbnail (not the original: no custody event), as the API's thumbnail route streams it."""
    stream = uploads.open_thumbnail(db_session(), state().store, security.viewer(), evidence_id)
    try:
        data = stream.read()
    finally:
        stream.close()
    return Response(data, headers={**file_headers(evidence_id, "image/jpeg"), "Cache-Control": "private, max-age=300"})


@bp.post("/files")
def read_file() -> Any:
    """Play or download a verified original: a logged read (`open_original`) with the stated purpose."""
    viewer, s = security.viewer(), db_session()
    evidence_id, _, disposition = (request.form.get("file") or "").partition("|")
    purpose = form_text("purpose", MAX_PURPOSE)
    back = back_to(url_for("console.evidence", evidence_id=evidence_id) if evidence_id else url_for("console.cases"))
    if not evidence_id:
        raise NotFound("no evidence given")
    if not purpose:
        flash(t("file.purpose_missing"), "error")
        return redirect(back, code=303)
    try:
        item, stream = uploads.open_original(s, state().store, viewer, evidence_id, purpose, now=now())
    except NotFound:
        raise
    except DomainError as exc:  # not verified (409), deleted under retention (410)
        s.rollback()
        flash_refusal(exc)
        return redirect(back, code=303)
    s.commit()  # the read is in the custody log before the first byte leaves

    return Response(stream_with_context(blocks(stream)),
                    headers=file_headers(item.id, item.media_type, sha256=item.sha256, size=item.size,
                                         inline=disposition == "inline"))

