"""Server facts bound by the custody log: a case's status and summary, who holds an item, why it was exported.

No phone signed these, so the package cannot re-derive them from records. Given a real case
(tests/media/test_package.py), each is held against a custody event that the step making the fact wrote when it
happened (a review step, a hand-over, the export), with its inclusion proof in the package. When someone with
database access edits the row before an export, the server seals the edited manifest faithfully, and
`verify-package` still names the field.
"""

from __future__ import annotations

import io
import json
import zipfile

from sqlalchemy import update

from backend.core.models import Case, CustodyHolder, Institution
from media.custody.encoding import fact_digest
from tests.media.test_package import PURPOSE, Built, built, cli, rewrite, served

__all__ = ["built", "served"]  # the fixtures: a package of a real case, offline and on its server


def export(built: Built, purpose: str = PURPOSE) -> bytes:
    r = built.client.get(f"/api/v1/cases/{built.case_id}/package", query_string={"purpose": purpose},
                         headers=built.hc)
    assert r.status_code == 200, r.data[:300]
    return r.data


def manifest_of(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def move(built: Built, to: str) -> None:
    r = built.client.post(f"/api/v1/cases/{built.case_id}/transitions", json={"to": to, "reason": "立案调查"},
                          headers=built.pa.headers)
    assert r.status_code == 201, r.json


def test_given_a_case_then_its_package_carries_the_proven_leaves_of_its_status_and_summary(built, tmp_path):
    case = manifest_of(built.zip)["case"]
    leaves = [json.loads(e["leaf"]) for e in case["custody_events"]]
    assert [leaf["action"] for leaf in leaves] == ["case_opened"]
    assert leaves[0]["case"] == built.case_id
    assert set(leaves[0]["facts"]) == {"status", "summary", "institution_id", "region_code", "department_code"}
    assert leaves[0]["facts"]["summary"] == fact_digest(case["summary"])  # a digest: the text may name people
    assert leaves[0]["facts"]["status"] == fact_digest("registered")
    assert all(e["proof"] is not None for e in case["custody_events"])
    assert cli(tmp_path, built.zip, "--public-key", built.key).exit_code == 0


def test_given_a_review_step_then_the_new_status_is_bound_and_the_package_verifies(served, tmp_path):
    move(served, "investigating")
    data = export(served)
    case = manifest_of(data)["case"]
    assert case["status"] == "investigating"
    assert [json.loads(e["leaf"])["action"] for e in case["custody_events"]] == ["case_opened", "case_changed"]
    result = cli(tmp_path, data, "--public-key", served.key)
    assert result.exit_code == 0, result.output


def test_given_the_status_edited_in_the_database_when_exported_then_the_status_is_named(served, db, tmp_path):
    """The case was never reviewed, yet its row says closed: the sealed package says so, and is refused."""
    with db.transaction() as s:
        s.execute(update(Case).where(Case.id == served.case_id).values(status="closed"))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert "case: status 'closed' is not the value the custody log bound at leaf" in result.output
    assert "not the member the index sealed" not in result.output  # the server sealed what it was given


def test_given_the_status_edited_after_a_review_step_then_the_newest_bound_value_decides(served, db, tmp_path):
    move(served, "investigating")
    with db.transaction() as s:
        s.execute(update(Case).where(Case.id == served.case_id).values(status="registered"))  # the step undone
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert "case: status 'registered' is not the value the custody log bound" in result.output


def test_given_the_summary_edited_in_the_database_then_the_summary_is_named(served, db, tmp_path):
    with db.transaction() as s:
        s.execute(update(Case).where(Case.id == served.case_id).values(summary="无违规"))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert "case: summary '无违规' is not the value the custody log bound" in result.output


def test_given_the_case_leaves_removed_from_the_package_then_nothing_binds_the_status(built, tmp_path):
    def strip(m: dict) -> None:
        m["case"]["custody_events"] = []

    result = cli(tmp_path, rewrite(built.zip, strip, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert "case: its status is bound by no proven custody event in the package" in result.output
    assert "case: its summary is bound by no proven custody event in the package" in result.output


def test_given_a_case_leaf_with_a_forged_proof_then_it_binds_nothing(built, tmp_path):
    def forge(m: dict) -> None:
        event = m["case"]["custody_events"][0]
        event["proof"] = ["00" * 32 for _ in event["proof"]] or ["00" * 32]

    result = cli(tmp_path, rewrite(built.zip, forge, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert "its inclusion proof does not hold" in result.output
    assert "case: its status is bound by no proven custody event" in result.output


def test_given_the_holder_edited_in_the_database_then_the_item_names_its_holder(served, db, tmp_path):
    """Nobody handed the item over (no 'transferred' event), yet the row names the custodian as its holder."""
    with db.transaction() as s:
        s.execute(update(CustodyHolder).where(CustodyHolder.evidence_id == served.e1)
                  .values(holder_id=served.custodian.id))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert (f"({served.e1}): custody_holder '{served.custodian.id}' is not the holder its proven custody events name "
            f"('{served.a.id}')") in result.output


def test_given_a_real_hand_over_then_the_new_holder_is_proven(served, tmp_path):
    c = served.client
    r = c.post(f"/api/v1/custody/holdings/{served.e1}/transfer", json={"to": served.custodian.id, "reason": "入库"},
               headers=served.pa.headers)
    assert r.status_code == 200, r.json
    r = c.post(f"/api/v1/custody/holdings/{served.e1}/acknowledge", json={"accept": True}, headers=served.hc)
    assert r.status_code == 200, r.json
    data = export(served)
    (item,) = [i for i in manifest_of(data)["evidence"] if i["id"] == served.e1]
    assert item["custody_holder"] == served.custodian.id
    result = cli(tmp_path, data, "--public-key", served.key)
    assert result.exit_code == 0, result.output


def test_given_the_purpose_changed_in_a_resealed_manifest_then_the_export_event_disagrees(built, tmp_path):
    """Only someone holding the custody key could reseal; the custody log still records why it was exported."""
    def repurpose(m: dict) -> None:
        m["package"]["purpose"] = "公开发布"

    result = cli(tmp_path, rewrite(built.zip, repurpose, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"the package's purpose '公开发布' differs from the one its 'exported' custody event records ('{PURPOSE}')" \
        in result.output


def test_given_the_author_changed_in_a_resealed_manifest_then_the_export_event_disagrees(built, tmp_path):
    def reauthor(m: dict) -> None:
        m["package"]["created_by"] = built.a.id

    result = cli(tmp_path, rewrite(built.zip, reauthor, reseal=built.signer), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"the package names '{built.a.id}' as its author, its 'exported' custody event '{built.custodian.id}'" \
        in result.output


def test_given_the_institution_renamed_in_the_database_then_the_name_the_phone_signed_disagrees(served, db,
                                                                                              tmp_path):
    with db.transaction() as s:
        inst_id = s.get(Case, served.case_id).institution_id
        s.execute(update(Institution).where(Institution.id == inst_id).values(name="另一家培训中心"))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 1
    assert "institution.name '另一家培训中心' differs from the signed record ('星光艺术培训中心')" in result.output


def test_given_the_institution_spelled_with_other_widths_and_spaces_then_it_is_the_same_name(served, db,
                                                                                           tmp_path):
    """The registry's rule for when two spellings name one institution is the verifier's rule too."""
    with db.transaction() as s:
        inst_id = s.get(Case, served.case_id).institution_id
        s.execute(update(Institution).where(Institution.id == inst_id).values(name="星光 艺术培训中心"))
    result = cli(tmp_path, export(served), "--public-key", served.key)
    assert result.exit_code == 0, result.output
