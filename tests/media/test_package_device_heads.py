"""Device heads in packages: each device's chain runs, in the package, to where the custody log saw it end.

Given a package of a real case, when a device's chain is cut short (in the package, or in the server's ledger
before the export), then `verify-package` names the device and what the signed leaf says was there.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import delete, select

from backend.core.models import CustodyEvent, LedgerRecord
from tests.media.test_package import PURPOSE, Built, built, cli, rewrite, served

__all__ = ["built", "served"]  # the fixtures: a package of a real case, offline and on its server (test_package)


def _device(m: dict, built: Built) -> dict:
    return m["devices"][built.pa.device_id]


def test_given_a_package_then_every_device_carries_its_proven_head_leaf(built, tmp_path):
    m = json.loads(zipfile.ZipFile(io.BytesIO(built.zip)).read("manifest.json"))
    for device_id, device in m["devices"].items():
        leaf = json.loads(device["head"]["leaf"])
        assert (leaf["action"], leaf["device"], leaf["seq"]) == ("device_head", device_id, device["last_seq"])
        assert device["head"]["proof"] is not None
    result = cli(tmp_path, built.zip, "--public-key", built.key)
    assert result.exit_code == 0, result.output


def test_given_the_last_record_dropped_from_the_package_then_the_cut_is_named(built, tmp_path):
    def cut(m: dict) -> None:
        device = _device(m, built)
        m["records"] = [r for r in m["records"] if not (r["device"] == built.pa.device_id and r["seq"] == 7)]
        device["last_seq"] = 6

    result = cli(tmp_path, rewrite(built.zip, cut), "--public-key", built.key)
    assert result.exit_code == 1
    assert (f"device {built.pa.device_id}: its chain is listed to seq 6, but the custody log witnessed it end at "
            "seq 7: records were cut from the end or added after it") in result.output


def test_given_the_head_leaf_removed_from_the_package_then_nothing_vouches_for_the_end(built, tmp_path):
    result = cli(tmp_path, rewrite(built.zip, lambda m: _device(m, built).pop("head")), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"device {built.pa.device_id}: no custody leaf witnesses where its chain ends" in result.output


def test_given_a_forged_head_leaf_then_its_proof_fails(built, tmp_path):
    def forge(m: dict) -> None:
        head = _device(m, built)["head"]
        leaf = json.loads(head["leaf"])
        head["leaf"] = json.dumps({**leaf, "seq": 6}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    result = cli(tmp_path, rewrite(built.zip, forge), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"device {built.pa.device_id}: head: custody event at leaf" in result.output
    assert "inclusion proof does not hold" in result.output


@pytest.mark.parametrize("rows", ["newest", "middle"])
def test_given_ledger_rows_deleted_on_the_server_then_the_next_package_shows_the_hole(served, db, tmp_path, rows):
    """Someone with database access deletes a device's ledger rows: its signed head leaf still names seq 7."""
    seqs = [7] if rows == "newest" else [5]
    with db.transaction() as s:
        s.execute(delete(LedgerRecord).where(LedgerRecord.device_id == served.pa.device_id,
                                             LedgerRecord.seq.in_(seqs)))
        assert s.scalar(select(CustodyEvent.leaf_index).where(CustodyEvent.device_id == served.pa.device_id))
    again = served.client.get(f"/api/v1/cases/{served.case_id}/package", query_string={"purpose": PURPOSE},
                             headers=served.hc)
    assert again.status_code == 200
    result = cli(tmp_path, again.data, "--public-key", served.key)
    assert result.exit_code == 1
    assert f"device {served.pa.device_id}: record seq {seqs[0]} is missing from the chain" in result.output
    if rows == "newest":
        assert (f"device {served.pa.device_id}: the record at seq 7 is not the one the custody log witnessed as its "
                "head") in result.output
