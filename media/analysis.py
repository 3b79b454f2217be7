"""What is read from verified bytes: photo metadata and thumbnails (Pillow, via media.photos), clips' containers
(media.video)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from backend.core.crypto import INTL
from backend.core.models import Evidence
from media.custody import log as custody
from media.settings import MediaSettings
from media.store import Store, opened

log = logging.getLogger("fieldcase.media")


def analyse_evidence(session: Session, store: Store, evidence: Evidence, settings: MediaSettings, *,
                     now: datetime) -> None:
    """Photos are read and clips' containers checked; a problem is a flag on the evidence, never a failed
    verification (a hash is a fact about bytes, decoding a fact about content)."""
    if not evidence.object_key:
        return
    if evidence.kind == "video":
        _analyse_clip(store, evidence)
        return
    if evidence.kind != "photo":
        return
    from media import photos

    with opened(store, evidence.object_key) as stream:
        report = photos.inspect_photo(stream, declared_captured_at=evidence.captured_at,
                                      declared_location=evidence.location, time_tolerance=settings.time_tolerance,
                                      distance_tolerance_m=settings.distance_tolerance_m,
                                      max_pixels=settings.max_pixels)
    evidence.media_info = report.as_dict()
    _replace_flags(evidence, {code.value for code in photos.FlagCode}, report.flag_codes)
    if report.decodable:
        try:
            with opened(store, evidence.object_key) as stream:
                thumb = photos.make_thumbnail(stream, max_pixels=settings.max_pixels)
        except photos.PhotoError as exc:
            log.info("no thumbnail for %s: %s", evidence.id, exc)
            return
        evidence.thumbnail_key = store.put_derived(f"thumbnails/{evidence.id}.jpg", thumb, "image/jpeg")
        custody.record(session, "thumbnail", evidence.id, "fieldcase", at=now, derived_from=evidence.sha256,
                       sha256=INTL.hexdigest(thumb), size=len(thumb), key=evidence.thumbnail_key)


def _analyse_clip(store: Store, evidence: Evidence) -> None:
    from media import video

    with opened(store, evidence.object_key) as stream:
        report = video.inspect_clip(stream)
    evidence.media_info = report.as_dict()
    _replace_flags(evidence, {code.value for code in video.ClipFlagCode}, report.flag_codes)


def _replace_flags(evidence: Evidence, own: set[str], found: list[str]) -> None:
    """The analysis's own flags are replaced by what it found now; the others (`late_upload`) stay."""
    kept = [f for f in (evidence.flags or []) if f not in own]
    evidence.flags = kept + [f for f in found if f not in kept]
