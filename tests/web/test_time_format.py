"""docs/protocol.md, "Times": every instant the server writes is RFC 3339 in UTC, to the millisecond, with `Z`.

Given a field day pushed by a phone (a case, an inspection with a photo and a body-camera clip, a finding, an end),
when the phone, a reviewer and a custodian read what they read, then every time in every answer is spelled the one
way, whatever the phone wrote (its records carry `+08:00` and whole seconds): the push results, the device, the
case, the inspection, the evidence item (its clip and what was read from the photo included), the pull feed, the
custody history and its leaves, the tree head, the coverage, the audit and the statistics.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest

from tests import images
from tests.phones import TestPhone, uid

RULE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# Anything that looks like an instant, wherever it stands in a string (a custody leaf is JSON text).
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CENTRE = {"name": "西湖区明日之星培训中心", "region": "330106", "address": "文三路 199 号"}


def instants(value: Any, where: str = "") -> list[tuple[str, str]]:
    """(where, text) of every instant in an answer."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in instants(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in instants(item, f"{where}[{index}]")]
    if isinstance(value, str):
        return [(where, match.group(0)) for match in INSTANT.finditer(value)]
    return []


def upload(client, phone: TestPhone, evidence_id: str, data: bytes) -> None:
    plan = client.post(f"/api/v1/evidence/{evidence_id}/uploads", headers=phone.headers).json
    path = plan["url"].split("localhost", 1)[1]
    assert client.put(path, data=data, headers=phone.headers).status_code == 200
    assert client.post(f"/api/v1/evidence/{evidence_id}/complete", json={}, headers=phone.headers).status_code == 200


@pytest.fixture
def answers(client, officers) -> dict[str, Any]:
    zhang = officers.make(region="330106", department="education")
    li = officers.make(region="330106", department="market")
    reviewer = officers.make(region="330106", roles=("reviewer",))
    phone = TestPhone(client, zhang, officers.headers(zhang))
    photo_bytes = images.jpeg_with_exif()
    clip_bytes = b"\x00\x00\x00\x08ftyp" + b"clip" * 100

    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    photo_id, photo = phone.evidence(iid, photo_bytes)
    clip_id = uid()
    begin = phone.clock
    clip = phone.record("evidence.capture", {
        "evidence_id": clip_id, "inspection_id": iid, "kind": "video", "media_type": "video/mp4",
        "sha256": hashlib.sha256(clip_bytes).hexdigest(), "size": len(clip_bytes),
        "captured_at": begin.isoformat(), "location": {"lat": 30.2741, "lon": 120.1551, "accuracy_m": 8.0},
        "clip": {"camera_serial": "CAM-7", "clip_index": 0, "started_at": begin.isoformat(),
                 "ended_at": (begin + timedelta(seconds=50)).isoformat()}})
    found = phone.record("inspection.finding", {"inspection_id": iid, "finding_id": uid(), "category": "unlicensed",
                                                "description": "现场发现无证培训", "evidence": [photo_id, uid()]})
    ended = phone.end(iid)
    pushed = phone.push([opened, started, photo, clip, found, ended])
    upload(client, phone, photo_id, photo_bytes)
    upload(client, phone, clip_id, clip_bytes)
    case_id = pushed["results"][0]["refs"]["case_id"]

    def get(path: str, headers: dict[str, str] = phone.headers, **query: Any) -> Any:
        r = client.get(path, headers=headers, query_string=query)
        assert r.status_code == 200, (path, r.json)
        return r.json

    looked_at = officers.headers(reviewer)
    return {
        "push": pushed,
        "device": get(f"/api/v1/devices/{phone.device_id}"),
        "case": get(f"/api/v1/cases/{case_id}"),
        "inspection": get(f"/api/v1/inspections/{iid}"),
        "photo": get(f"/api/v1/evidence/{photo_id}"),
        "clip": get(f"/api/v1/evidence/{clip_id}"),
        "pull": get("/api/v1/sync/pull"),
        "custody": get(f"/api/v1/evidence/{photo_id}/custody"),
        "tree_head": get("/api/v1/custody/tree-head"),
        "coverage": get(f"/api/v1/inspections/{iid}/coverage"),
        "audit": get("/api/v1/audit/issues", looked_at),
        "stats": get("/api/v1/stats", looked_at),
    }


def test_given_a_field_day_when_its_answers_are_read_then_every_instant_follows_the_one_rule(answers):
    found = {name: instants(answer) for name, answer in answers.items()}

    off_rule = [(name, where, text) for name, pairs in found.items() for where, text in pairs
                if not RULE.fullmatch(text)]

    assert off_rule == []
    # And the scan saw what it is for: times in every answer that carries one, the signed ones included.
    assert all(found[name] for name in answers if name not in ("push",)), {k: len(v) for k, v in found.items()}
    assert any(where == ".clip.started_at" for where, _ in found["clip"])
    assert any(where == ".media_info.exif_captured_at" for where, _ in found["photo"])
    assert any(where.endswith(".leaf") for where, _ in found["custody"])


def test_given_the_rule_when_instants_are_compared_as_text_then_they_sort_as_the_instants_do(answers):
    events = answers["custody"]["events"]

    stamps = [event["at"] for event in events]

    assert stamps == sorted(stamps)
    assert all(DAY.fullmatch(stamp[:10]) for stamp in stamps)
