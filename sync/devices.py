"""Device enrolment, status and revocation (PROTOCOL §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.crypto import suite_for_alg
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import may_see_region
from backend.core.models import ZERO_HASH, DeferredRecord, Device, Officer, new_id
from sync.jws import RECORD_ALGS, device_alg, load_device_key

ENROL_ALGS = RECORD_ALGS
"""What a phone may enrol its key for (`alg`, PROTOCOL §2): `EdDSA` or `Ed25519` (an Ed25519 key, the default), or
`SM2SM3` (an SM2 key). The device's records carry an alg of the same suite."""


def enrol(session: Session, officer: Officer, public_key: str, label: str = "", alg: str = "EdDSA") -> Device:
    suite = suite_for_alg(alg)
    if suite is None:
        message = f"alg must be one of {', '.join(ENROL_ALGS)}"
        raise Invalid(message, errors={"alg": [message]})
    try:
        load_device_key(public_key, suite, canonical=True)
    except ValueError as exc:
        raise Invalid(str(exc), errors={"public_key": [str(exc)]}) from None
    if session.scalar(select(func.count()).where(Device.public_key == public_key)):
        raise Conflict("this public key is already enrolled", errors={"public_key": ["already enrolled"]})
    device = Device(id=new_id("dev"), officer_id=officer.id, public_key=public_key, suite=suite.name, label=label,
                    status="active", head_seq=0, head_hash=ZERO_HASH, quarantined_total=0)
    session.add(device)
    session.flush()
    return device


def visible_device(session: Session, viewer: Officer, device_id: str) -> Device:
    """The owner sees their device; admins and reviewers see devices of officers in their jurisdiction."""
    device = session.get(Device, device_id)
    if device is not None and device.officer_id != viewer.id:
        owner = session.get(Officer, device.officer_id)
        if not (viewer.has_role("admin", "reviewer") and owner and may_see_region(viewer, owner.region_code)):
            device = None
    if device is None:
        raise NotFound(f"no device {device_id!r}")
    return device


def _ranges(seqs: list[int], head: int) -> list[dict[str, int]]:
    """Missing seq ranges between the head and each held record."""
    out, expected = [], head + 1
    for s in seqs:
        if s > expected:
            out.append({"first": expected, "last": s - 1})
        expected = s + 1
    return out


def describe(session: Session, device: Device) -> dict[str, Any]:
    held = list(session.scalars(select(DeferredRecord.seq).where(DeferredRecord.device_id == device.id)
                                .order_by(DeferredRecord.seq)))
    return {
        "id": device.id, "officer_id": device.officer_id, "label": device.label, "status": device.status,
        "alg": device_alg(device.suite),
        "head": {"seq": device.head_seq, "hash": device.head_hash},
        "deferred": {"count": len(held), "missing": _ranges(held, device.head_seq)},
        "quarantined": device.quarantined_total,
        "last_push_at": device.last_push_at, "created_at": device.created_at, "revoked_at": device.revoked_at,
    }


def get_device(session: Session, viewer: Officer, device_id: str) -> dict[str, Any]:
    return describe(session, visible_device(session, viewer, device_id))


def revoke(session: Session, actor: Officer, device_id: str, *, now: datetime) -> dict[str, Any]:
    device = visible_device(session, actor, device_id)
    if device.officer_id != actor.id and not actor.has_role("admin"):
        raise Forbidden("only the owner or an admin may revoke a device")
    if device.status != "revoked":
        device.status, device.revoked_at, device.revoked_by = "revoked", now, actor.id
        session.flush()
    return describe(session, device)
