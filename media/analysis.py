"""What is read from verified bytes: photo metadata and thumbnails (Pillow, via media.photos)."""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy.orm import Session

from backend.core.models import Evidence
from media.custody import log as custody
from media.settings import MediaSettings
from media.store import Store, opened

log = logging.getLogger("fieldcase.media")


def analyse_evidence(session: Session, store: Store, evidence: Evidence, settings: MediaSettings) -> None:
    """Photos only, for now; a decoding problem is a flag on the evidence, never a failed verification."""
    if evidence.kind != "photo" or not evidence.object_key:
        return
    from media import photos

    with opened(store, evidence.object_key) as stream:
        report = photos.inspect_photo(stream, declared_captured_at=evidence.captured_at,
                                      declared_location=evidence.location, time_tolerance=settings.time_tolerance,
                                      distance_tolerance_m=settings.distance_tolerance_m,
                                      max_pixels=settings.max_pixels)
    evidence.media_info = report.as_dict()
    photo_flags = {code.value for code in photos.FlagCode}
    kept = [f for f in (evidence.flags or []) if f not in photo_flags]
    evidence.flags = kept + [f for f in report.flag_codes if f not in kept]
    if report.decodable:
        try:
            with opened(store, evidence.object_key) as stream:
                thumb = photos.make_thumbnail(stream, max_pixels=settings.max_pixels)
        except photos.PhotoError as exc:
            log.info("no thumbnail for %s: %s", evidence.id, exc)
            return
        evidence.thumbnail_key = store.put_derived(f"thumbnails/{evidence.id}.jpg", thumb, "image/jpeg")
        custody.record(session, "thumbnail", evidence.id, "fieldcase", derived_from=evidence.sha256,
                       sha256=hashlib.sha256(thumb).hexdigest(), size=len(thumb), key=evidence.thumbnail_key)
