"""Evidence packages (PROTOCOL §8): one ZIP that proves a case's records and files without the server.

A package holds `manifest.json` (the case, its inspections and findings; every
ledger record of the case as its signed JWS; per device its public key and the
bare hashes of its *other* records between the first and last included one, so
each hash chain can be walked without revealing unrelated work; the evidence
items with their custody events, each with an inclusion proof against a signed
tree head that is also in the manifest; the custody public key), the verified
files under `files/`, and `evidence-list.csv` / `.html` / `.pdf` (电子数据清单, made
by `media.evidence_list`) for people without tools. `media.package_verify` checks it offline.
An item whose file retention deleted is still listed, with its hash and its
`deleted` custody event (proven like every other) in place of the file.

**Export events and the tree head.** Exporting is itself a custody event
(`exported`, with `purpose` and `package`) for every item. The package must
prove the events it lists, including its own export, so the order is:
record the export events (`record_export`) and the edge commits (they become
leaves), *then* the edge takes a signed head (`heads.latest_head`, which
therefore covers them) and commits it, *then* every proof is computed against
that head (`prepare_package`), *then* the ZIP is written. Events appended
after the head (a concurrent read) are left out: a package lists only what
its head proves. The cost is
that an export is logged even when the download is interrupted afterwards;
over-logging a hand-out is the safe side for a custody log. The head carries
its RFC 3161 timestamp (`timestamp_token`) when it has one once its commit is
done: with jobs inline the TSA is asked right after that commit; with RQ
workers a head made for this export is timestamped later, and the package
goes without (`verify-package` notes it; the token is served with the head).

**Memory.** Everything from the database is gathered first (`prepare_package`);
the ZIP is then produced by `PreparedPackage.chunks`, a generator that writes
through `zipfile` into a small drain buffer and yields what accumulated after
every file chunk, so neither the files nor the archive is ever held whole.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.jurisdiction import get_scoped
from backend.core.models import (
    Case,
    CaseAlias,
    ChainGap,
    CustodyHolder,
    Device,
    Institution,
    LedgerRecord,
    Officer,
)
from backend.core.times import utc_millis
from media import evidence_list, package_index, verify_html
from media.custody import heads, sm_tree, trees
from media.custody import log as custody
from media.custody.keys import Signer
from media.package_scope import Scope, case_scope, chunked
from media.store import CHUNK, Store, opened
from sync.jws import device_alg

FORMAT = "fieldcase-evidence-package"
FORMAT_VERSION = 2  # 2: sealed by package-index.json, and device heads witnessed (PROTOCOL "Evidence packages")
MANIFEST = "manifest.json"
CSV_NAME = "evidence-list.csv"
HTML_NAME = "evidence-list.html"
PDF_NAME = "evidence-list.pdf"


@dataclass(frozen=True)
class PackageFile:
    name: str
    object_key: str
    size: int
    sha256: str
    sm3: str | None = None  # the item's, for the SM seal (none before the server computed SM3)


@dataclass
class PreparedPackage:
    """Everything the ZIP holds except the file bytes, which are streamed from the store when written."""

    id: str
    case_id: str
    filename: str
    manifest: dict[str, Any]
    documents: list[tuple[str, bytes]]  # the manifest, the evidence lists and verify.html, as stored
    index: bytes  # the sealed index of every member, the last member
    created_at: datetime
    files: list[PackageFile] = field(default_factory=list)

    def chunks(self, store: Store) -> Iterator[bytes]:
        """The ZIP as a stream of byte blocks (at most about one store chunk each)."""
        drain = _Drain()
        with zipfile.ZipFile(drain, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[arg-type]
            for name, data in self.documents:
                zf.writestr(name, data)
            yield drain.take()
            for item in self.files:
                info = zipfile.ZipInfo(item.name, date_time=_zip_time(self.created_at))
                info.compress_type = zipfile.ZIP_STORED  # photos and videos are compressed already
                info.file_size = item.size  # lets zipfile choose ZIP64 up front for large files
                with opened(store, item.object_key) as source, zf.open(info, "w") as target:
                    while block := source.read(CHUNK):
                        target.write(block)
                        yield drain.take()
                yield drain.take()
            zf.writestr(package_index.INDEX_NAME, self.index)
        yield drain.take()

    def write(self, store: Store, out: BinaryIO) -> None:
        for block in self.chunks(store):
            if block:
                out.write(block)


class _Drain:
    """A write-only, non-seekable sink: zipfile then streams (data descriptors) and we pick the bytes up."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    return (at.year, at.month, at.day, at.hour, at.minute, at.second)


def _extension(media_type: str) -> str:
    ext = mimetypes.guess_extension(media_type.split(";")[0].strip()) or ".bin"
    return ".jpg" if ext in (".jpe", ".jpeg") else ext


@dataclass(frozen=True)
class Export:
    """An export logged in the custody log (`record_export`), waiting for the head that will prove it."""

    id: str
    case_id: str
    purpose: str
    created_at: datetime
    scope: Scope


def record_export(session: Session, viewer: Officer, case_id: str, *, purpose: str, items: list[str] | None = None,
                  now: datetime) -> Export:
    """Log the export of a case (of its `items`, when given: just those evidence items and what they need,
    `media.package_scope`), and witness its devices' heads. The edge commits this before it takes the signed head
    the package is proven against. Raises NotFound outside the viewer's jurisdiction, like every get."""
    case = get_scoped(session, Case, case_id, viewer, what="case")
    scope = case_scope(session, case.id, items)
    export = Export(id=str(uuid.uuid4()), case_id=case.id, purpose=purpose, created_at=now, scope=scope)
    for item in scope.evidence:
        custody.record(session, "exported", item.id, viewer.id, at=now, purpose=purpose, package=export.id)
    _witness_heads(session, viewer, {r.device_id for r in scope.records}, now)
    _witness_case(session, viewer, case, now)
    return export


def prepare_package(session: Session, signer: Signer, viewer: Officer, export: Export,
                    head: dict[str, Any]) -> PreparedPackage:
    """Gather the manifest of a committed export, every proof against `head` (a signed head taken after the
    export was committed, so it covers it). Only reads."""
    case_id, scope, purpose = export.case_id, export.scope, export.purpose
    inspections, evidence, findings, records = scope.inspections, scope.evidence, scope.findings, scope.records
    package_id, created_at = export.id, export.created_at
    size = head["tree_size"]
    head = heads.stored_head(session, size)  # now with its RFC 3161 token, when that commit got one (inline TSA)

    case = session.get(Case, case_id)
    assert case is not None  # noqa: S101 - it was there a moment ago and cases are never deleted
    devices = _devices(session, records, size)
    holders = {h.evidence_id: h for chunk in chunked([e.id for e in evidence])
               for h in session.scalars(select(CustodyHolder).where(CustodyHolder.evidence_id.in_(chunk)))}
    people = {o.id: o for o in session.scalars(select(Officer).where(Officer.id.in_(
        sorted({e.officer_id for e in evidence} | {h.holder_id for h in holders.values()} | {viewer.id}))))}

    items, files = [], []
    for n, item in enumerate(evidence, start=1):
        name = None
        if item.status == "verified" and item.object_key:
            name = f"files/{n:04d}_{item.id}{_extension(item.media_type)}"
            files.append(PackageFile(name, item.object_key, item.size, item.sha256, item.sm3))
        holder = holders.get(item.id)
        events, declared_sm3 = [], False
        for event in custody.events_for(session, item.id):
            if event["leaf_index"] >= size:
                continue  # appended after the head: this package cannot prove it
            proof = trees.inclusion(session, event["leaf_index"], size)["proof"]
            events.append({"leaf_index": event["leaf_index"], "leaf": event["leaf"], "proof": proof})
            declared_sm3 = declared_sm3 or (event.get("action") == "declared" and "sm3" in event)
        items.append({
            # `sm3` only for an item whose phone declared one. Any other item is listed exactly as before SM3
            # existed, as verify.html reads it; the SM3 the server computed of its file is in its proven `verified`
            # custody event (and in the evidence list).
            "item": n, "id": item.id, "sha256": item.sha256, **({"sm3": item.sm3} if declared_sm3 else {}),
            "size": item.size, "kind": item.kind,
            "media_type": item.media_type, "captured_at": utc_millis(item.captured_at), "device": item.device_id,
            "officer": item.officer_id, "officer_name": _name(people, item.officer_id),
            "inspection_id": item.inspection_id, "status": item.status, "file": name,
            "deleted_at": utc_millis(item.deleted_at), "deleted_by": item.deleted_by,
            "custody_holder": holder.holder_id if holder else None,
            "custody_holder_name": _name(people, holder.holder_id) if holder else None,
            "custody_events": events,
        })

    institution = session.get(Institution, case.institution_id)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "package": {"id": package_id, "case_id": case_id, "created_at": utc_millis(created_at), "created_by": viewer.id,
                    "created_by_name": viewer.name, "purpose": purpose, "items": scope.items},
        "case": {
            "id": case.id, "status": case.status, "summary": case.summary, "version": case.version,
            "region_code": case.region_code, "department_code": case.department_code,
            "created_by": case.created_by, "created_at": utc_millis(case.created_at),
            "updated_at": utc_millis(case.updated_at),
            "custody_events": _proven(session, custody.case_events(session, case_id, below=size), size),
            "institution": None if institution is None else {
                "id": institution.id, "name": institution.name, "credit_code": institution.credit_code,
                "address": institution.address, "region_code": institution.region_code},
            "aliases": [{"client_case_id": a.client_case_id, "device": a.device_id, "merged": a.merged}
                        for a in session.scalars(select(CaseAlias).where(CaseAlias.case_id == case_id)
                                                 .order_by(CaseAlias.created_at, CaseAlias.client_case_id))],
        },
        "inspections": [{
            "id": i.id, "device": i.device_id, "started_by": i.started_by, "started_at": utc_millis(i.started_at),
            "ended_at": utc_millis(i.ended_at), "officers": i.officers, "location": i.location, "outcome": i.outcome,
            "notes": i.notes, "flags": i.flags} for i in inspections],
        "findings": [{
            "id": f.id, "inspection_id": f.inspection_id, "category": f.category, "description": f.description,
            "evidence": f.evidence, "recorded_by": f.recorded_by, "recorded_at": utc_millis(f.recorded_at), "op": f.op}
            for f in findings],
        "records": [{"device": r.device_id, "seq": r.seq, "hash": r.hash, "type": r.type, "status": r.status,
                     "code": r.code, "jws": r.jws} for r in records],
        "devices": devices,
        "evidence": items,
        # The key that signed this head: after a key rotation a stored head may carry a retired key's id.
        "custody": {"tree_head": head, "public_key": signer.public_key_for(head["key_id"]) or signer.public_key,
                    "key_id": head["key_id"],
                    "algorithm": "Ed25519",
                    "leaf_hash": "SHA-256(0x00 || leaf)", "node_hash": "SHA-256(0x01 || left || right)"},
    }
    sm_part = _sm_custody(session, signer, manifest, size)
    if sm_part is not None:  # only where the SM tree is kept and reaches the head: else the manifest is as it was
        manifest["custody"]["sm"] = sm_part
    stamp = created_at.strftime("%Y%m%dT%H%M%SZ")
    listing = evidence_list.build(session, viewer, manifest)
    documents = [(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")),
                 (CSV_NAME, evidence_list.to_csv(listing).encode("utf-8")),
                 (HTML_NAME, evidence_list.to_html(listing).encode("utf-8")),
                 (PDF_NAME, evidence_list.to_pdf(listing)),
                 (verify_html.NAME, verify_html.page())]  # the no-install verifier, sealed like every member
    index = package_index.seal(signer, package_id=package_id, case_id=case_id, head=head, documents=documents,
                               files=[(f.name, f.sha256, f.size, f.sm3) for f in files],
                               sm=signer.sm if sm_part is not None else None)  # sealed in SM2 with the SM tree
    return PreparedPackage(id=package_id, case_id=case_id, filename=f"case-{case_id}-{stamp}.zip",
                           manifest=manifest, documents=documents, index=index, created_at=created_at, files=files)


def _sm_custody(session: Session, signer: Signer, manifest: dict[str, Any], size: int) -> dict[str, Any] | None:
    """The SM tree's part of the custody section (FIELDCASE_CUSTODY_SUITES=intl,sm): its head at the package's tree
    size, its SM2 key, and the SM3 inclusion proof of every leaf the package proves, by leaf index (the same leaves,
    so each event is listed once, with its SHA-256 proof, and proven in both trees). None where no SM head exists at
    that size (the SM tree is not kept, or not built over the log yet)."""
    sm = getattr(signer, "sm", None)
    head = sm_tree.session_sm_head(session, size) if sm is not None else None
    if sm is None or head is None:
        return None
    proven = [e["leaf_index"] for item in manifest["evidence"] for e in item["custody_events"]]
    proven += [e["leaf_index"] for e in manifest["case"]["custody_events"]]
    proven += [d["head"]["leaf_index"] for d in manifest["devices"].values() if d["head"] is not None]
    proofs = {str(i): trees.inclusion(session, i, size, "sm")["proof"] for i in sorted(set(proven))}
    return {"tree_head": head, "public_key": sm.public_key_for(head["key_id"]) or sm.public_key,
            "key_id": head["key_id"], "algorithm": "SM2", "user_id": "1234567812345678",
            "leaf_hash": "SM3(0x00 || leaf)", "node_hash": "SM3(0x01 || left || right)", "proofs": proofs}


def _name(people: dict[str, Officer], officer_id: str) -> str | None:
    person = people.get(officer_id)
    return person.name if person else None


def _witness_heads(session: Session, viewer: Officer, device_ids: set[str], now: datetime) -> None:
    """Where each device's chain ends now, as a custody leaf, unless the newest one already says so (every push
    writes one; a chain last moved before device_head leaves existed gets its first here)."""
    for device_id in sorted(device_ids):
        device = session.get(Device, device_id)
        if device is None or device.head_seq < 1:
            continue
        latest = custody.latest_device_head(session, device_id)
        leaf = json.loads(latest.leaf) if latest is not None else {}
        if (leaf.get("seq"), leaf.get("record_hash")) != (device.head_seq, device.head_hash):
            custody.device_head(session, viewer.id, device_id, device.head_seq, device.head_hash, at=now)


def _witness_case(session: Session, viewer: Officer, case: Case, now: datetime) -> None:
    """A case opened before case leaves existed has its facts bound once, by the first export that sees them;
    every later change is bound as it happens (media.custody.log.CASE_FACTS)."""
    if not custody.case_events(session, case.id):
        custody.case_facts(session, custody.CASE_WITNESSED, viewer.id, case.id, case.version,
                           custody.case_fact_values(case), at=now)


def _proven(session: Session, events: list[Any], size: int) -> list[dict[str, Any]]:
    return [{"leaf_index": e.leaf_index, "leaf": e.leaf,
             "proof": trees.inclusion(session, e.leaf_index, size)["proof"]} for e in events]


def _devices(session: Session, records: list[LedgerRecord], size: int) -> dict[str, Any]:
    """Per device: key and alg (what its records are signed and chained with), the range from its first included
    record to its head as the custody log witnessed it (with the proof of that leaf), the hashes of the other
    records inside it, and released gaps."""
    by_device: dict[str, list[LedgerRecord]] = {}
    for r in records:
        by_device.setdefault(r.device_id, []).append(r)
    out: dict[str, Any] = {}
    for device_id, rows in sorted(by_device.items()):
        device = session.get(Device, device_id)
        witnessed = custody.latest_device_head(session, device_id, below=size)
        head = None
        first, last = rows[0].seq, rows[-1].seq
        if witnessed is not None:
            last = max(last, json.loads(witnessed.leaf)["seq"])
            head = {"leaf_index": witnessed.leaf_index, "leaf": witnessed.leaf,
                    "proof": trees.inclusion(session, witnessed.leaf_index, size)["proof"]}
        included = {r.seq for r in rows}
        others = [{"seq": seq, "hash": digest} for seq, digest in session.execute(
            select(LedgerRecord.seq, LedgerRecord.hash).where(
                LedgerRecord.device_id == device_id, LedgerRecord.seq.between(first, last))
            .order_by(LedgerRecord.seq)) if seq not in included]
        gaps = [[g.first_seq, g.last_seq] for g in session.scalars(select(ChainGap).where(
            ChainGap.device_id == device_id, ChainGap.first_seq <= last, ChainGap.last_seq >= first)
            .order_by(ChainGap.first_seq))]
        out[device_id] = {"public_key": device.public_key if device else None,
                          "alg": device_alg(device.suite) if device else None,
                          "officer": device.officer_id if device else None,
                          "status": device.status if device else None,
                          "first_seq": first, "last_seq": last, "other_records": others, "gaps": gaps,
                          "head": head}
    return out

