"""Exporting part of a case: chosen evidence items, with just the records and proofs they need.

Given a real case (tests/media/test_package.py: phone A's photo e1 and an undelivered item e2 on one
inspection, phone B's clip e3), when a custodian exports only e3, then the package holds e3, its declaration,
its inspection's start and end and nothing else of the case, and it verifies with the same tools.
"""

from __future__ import annotations

import io
import json
import zipfile

from sqlalchemy import select

from backend.core.models import CustodyEvent
from tests.media.test_package import PURPOSE, Built, cli, rewrite, served

__all__ = ["served"]  # the fixture: a package of a real case on its server


def export(built: Built, *items: str):
    return built.client.get(f"/api/v1/cases/{built.case_id}/package", headers=built.hc,
                            query_string=[("purpose", PURPOSE), *(("evidence", i) for i in items)])


def test_given_one_clip_chosen_then_the_package_holds_it_and_what_it_needs_only(served, db, tmp_path):
    r = export(served, served.e3)
    assert r.status_code == 200, r.data[:300]
    archive = zipfile.ZipFile(io.BytesIO(r.data))
    m = json.loads(archive.read("manifest.json"))
    assert m["package"]["items"] == [served.e3]
    assert [e["id"] for e in m["evidence"]] == [served.e3]
    assert [n for n in archive.namelist() if n.startswith("files/")] == [m["evidence"][0]["file"]]
    (inspection,) = m["inspections"]
    assert m["findings"] == []  # the case's one finding cites no chosen item
    types = sorted((r["device"] == served.pb.device_id, r["type"]) for r in m["records"])
    assert types == [(False, "inspection.end"), (False, "inspection.start"), (True, "evidence.capture")]
    assert set(m["devices"]) == {served.pa.device_id, served.pb.device_id}
    result = cli(tmp_path, r.data, "--public-key", served.key)
    assert result.exit_code == 0, result.output
    assert "1 evidence items (1 files)" in result.output
    with db.session() as s:  # the export is in the custody log of the chosen item only
        exported = s.scalars(select(CustodyEvent.evidence_id).where(CustodyEvent.action == "exported",
                                                                    CustodyEvent.leaf.contains(m["package"]["id"])))
        assert list(exported) == [served.e3]
    assert m["evidence"][0]["inspection_id"] == inspection["id"]


def test_given_an_item_cited_by_a_finding_then_the_finding_comes_with_it(served, tmp_path):
    r = export(served, served.e1)
    assert r.status_code == 200
    m = json.loads(zipfile.ZipFile(io.BytesIO(r.data)).read("manifest.json"))
    assert [e["id"] for e in m["evidence"]] == [served.e1]
    assert all(served.e1 in f["evidence"] for f in m["findings"])
    assert cli(tmp_path, r.data, "--public-key", served.key).exit_code == 0


def test_given_a_partial_package_tampered_then_it_is_caught_like_any_other(served, tmp_path):
    data = export(served, served.e3).data

    def drop(m: dict) -> None:
        m["records"] = [r for r in m["records"] if r["type"] != "inspection.start"]

    result = cli(tmp_path, rewrite(data, drop, reseal=served.signer), "--public-key", served.key)
    assert result.exit_code == 1
    assert "no inspection.start record whose signature holds is in the package" in result.output


def test_given_items_that_are_not_of_the_case_then_422_naming_them(served):
    r = export(served, served.e3, "00000000-0000-4000-8000-000000000000")
    assert r.status_code == 422
    assert r.json["errors"]["evidence"] == ["not an item of this case: 00000000-0000-4000-8000-000000000000"]
