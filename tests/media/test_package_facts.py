"""Facts from signed records: what a package says of inspections, findings and items is what the phones signed.

Given a real case (tests/media/test_package.py), when someone with database access edits a finding, an
inspection or an item before the export, then the package still carries the phones' signed records, and
`verify-package` names the field that disagrees with them, even though the server sealed the edited manifest.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import select, update

from backend.core.models import Evidence, Finding, Inspection, LedgerRecord
from tests.media.test_package import PURPOSE, Built, built, cli, rewrite, served

__all__ = ["built", "served"]  # the fixtures: a package of a real case, offline and on its server


def export(built: Built) -> bytes:
    r = built.client.get(f"/api/v1/cases/{built.case_id}/package", query_string={"purpose": PURPOSE},
                         headers=built.hc)
    assert r.status_code == 200
    return r.data


@pytest.mark.parametrize("model, column, value, says", [
    (Finding, "description", "现场未发现问题", "description '现场未发现问题' differs from the signed record"),
    (Finding, "category", "fire_safety", "category 'fire_safety' differs from the signed record"),
    (Inspection, "outcome", "no_violation", "outcome 'no_violation' differs from the signed record"),
    (Inspection, "officers", ["ofc_nobody"], "officers ['ofc_nobody'] differs from the signed record"),
])
def test_given_a_row_edited_in_the_database_when_exported_then_the_field_is_named(served, db, tmp_path, model,
                                                                               column, value, says):
    assert cli(tmp_path, export(served), "--public-key", served.key).exit_code == 0
    with db.transaction() as s:
        s.execute(update(model).values({column: value}))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert says in result.output
    assert "not the member the index sealed" not in result.output  # the server sealed what it was given


def test_given_a_capture_time_edited_in_the_database_then_the_item_says_so(served, db, tmp_path):
    with db.transaction() as s:
        item = s.scalars(select(Evidence).where(Evidence.id == served.e1)).one()
        item.captured_at = item.captured_at.replace(year=2020)
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert f"({served.e1}): captured_at" in result.output and "differs from the signed record" in result.output


def test_given_a_finding_record_moved_out_of_the_package_then_the_finding_has_no_signed_record(built, tmp_path):
    """An insider holding the custody key re-seals a package whose finding record became a bare hash."""
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(built.zip)).read("manifest.json"))
    (finding,) = manifest["findings"]

    def hide(m: dict) -> None:
        rec = next(r for r in m["records"] if r["type"] == "inspection.finding")
        m["records"].remove(rec)
        m["devices"][rec["device"]]["other_records"].append({"seq": rec["seq"], "hash": rec["hash"]})

    result = cli(tmp_path, rewrite(built.zip, hide, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert (f"finding {finding['id']}: no inspection.finding record whose signature holds is in the package"
            in result.output)


def test_given_a_record_of_another_case_slipped_in_then_it_does_not_belong(served, tmp_path):
    """Phone A's case.open of another institution sits between this case's records: moved into the package, it
    is refused by what it says, whatever the manifest claims."""
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(served.zip)).read("manifest.json"))
    device = manifest["devices"][served.pa.device_id]
    (other,) = [o for o in device["other_records"] if o["seq"] == 5]

    with served.officers.db.session() as s:
        jws = s.scalar(select(LedgerRecord.jws).where(LedgerRecord.hash == other["hash"]))

    def slip(m: dict) -> None:
        m["devices"][served.pa.device_id]["other_records"].remove(other)
        m["records"].append({"device": served.pa.device_id, "seq": 5, "hash": other["hash"], "type": "case.open",
                             "status": "applied", "code": None, "jws": jws})

    result = cli(tmp_path, rewrite(served.zip, slip, reseal=served.signer), "--public-key", served.key)
    assert result.exit_code == 1
    assert (f"record {served.pa.device_id}#5: a case.open that, by what it says, does not belong to this case"
            in result.output)


def test_given_the_case_open_of_an_alias_hidden_then_the_alias_has_no_signed_record(built, tmp_path):
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(built.zip)).read("manifest.json"))
    (alias,) = [a["client_case_id"] for a in manifest["case"]["aliases"] if a["device"] == built.pa.device_id]

    def hide(m: dict) -> None:
        rec = next(r for r in m["records"] if r["type"] == "case.open" and r["device"] == built.pa.device_id)
        m["records"].remove(rec)
        m["devices"][rec["device"]]["other_records"].append({"seq": rec["seq"], "hash": rec["hash"]})
        m["devices"][rec["device"]]["first_seq"] = min(r["seq"] for r in m["records"]
                                                       if r["device"] == rec["device"])

    result = cli(tmp_path, rewrite(built.zip, hide, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"case alias {alias}: its signed case.open record is not in the package" in result.output
