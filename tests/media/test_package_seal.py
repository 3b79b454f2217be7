"""The sealed package: every member is in a signed index, so any member added, removed, renamed or edited is named.

Given a package of a real case (tests/media/test_package.py), when one of its members is changed after the
export, then `verify-package` fails and names the member; the index itself cannot be changed without the
custody key.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from media.package_index import INDEX_NAME
from tests.media.test_package import Built, built, cli, rewrite

__all__ = ["built"]  # the fixture: a package of a real case


def _index(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read(INDEX_NAME))


def _files(data: bytes) -> list[str]:
    return [n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.startswith("files/")]


def test_given_a_package_then_its_index_lists_every_other_member_with_hash_and_size(built: Built, tmp_path):
    archive = zipfile.ZipFile(io.BytesIO(built.zip))
    index = _index(built.zip)
    assert {m["name"] for m in index["members"]} == set(archive.namelist()) - {INDEX_NAME}
    assert {"manifest.json", "evidence-list.csv", "evidence-list.html", "evidence-list.pdf"} <= {
        m["name"] for m in index["members"]}
    manifest = json.loads(archive.read("manifest.json"))
    assert index["tree_head"]["tree_size"] == manifest["custody"]["tree_head"]["tree_size"]
    assert index["package"] == built.package_id and index["key_id"] == manifest["custody"]["key_id"]
    assert cli(tmp_path, built.zip, "--public-key", built.key).exit_code == 0


@pytest.mark.parametrize("change, says", [
    (lambda e: e.update({"files/9999_extra.jpg": b"planted"}),
     "member files/9999_extra.jpg: not in the signed index (added to the package, or renamed)"),
    (lambda e: e.pop("evidence-list.csv"),
     "member evidence-list.csv: in the signed index but not in the package (removed, or renamed)"),
    (lambda e: e.update({"evidence-list.html": e["evidence-list.html"].replace("星光".encode(), "月光".encode())}),
     "member evidence-list.html: not the member the index sealed"),
    (lambda e: e.update({"evidence-list.pdf": e["evidence-list.pdf"] + b"\n% appended"}),
     "member evidence-list.pdf: not the member the index sealed"),
])
def test_given_a_member_added_removed_or_edited_then_it_is_named(built: Built, tmp_path, change, says):
    result = cli(tmp_path, rewrite(built.zip, files=change), "--public-key", built.key)
    assert result.exit_code == 1
    assert says in result.output


def test_given_a_file_renamed_then_both_names_are_reported(built: Built, tmp_path):
    old = _files(built.zip)[0]
    new = old.replace("files/", "files/renamed_")

    def rename(entries: dict) -> None:
        entries[new] = entries.pop(old)

    result = cli(tmp_path, rewrite(built.zip, files=rename), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"member {new}: not in the signed index" in result.output
    assert f"member {old}: in the signed index but not in the package" in result.output


def test_given_the_manifest_edited_then_the_seal_names_it_even_where_nothing_else_is_signed(built: Built, tmp_path):
    """The export purpose is not in any record: only the seal shows it was changed."""
    def purpose(m: dict) -> None:
        m["package"]["purpose"] = "另作他用"

    result = cli(tmp_path, rewrite(built.zip, purpose), "--public-key", built.key)
    assert result.exit_code == 1
    assert "member manifest.json: not the member the index sealed" in result.output


def test_given_the_index_removed_or_forged_then_the_package_is_not_sealed(built: Built, tmp_path):
    missing = cli(tmp_path, rewrite(built.zip, files=lambda e: e.pop(INDEX_NAME)), "--public-key", built.key)
    assert missing.exit_code == 1 and f"{INDEX_NAME} is missing: the package is not sealed" in missing.output

    def forge(entries: dict) -> None:
        index = json.loads(entries[INDEX_NAME])
        index["members"] = [m for m in index["members"] if m["name"] != "evidence-list.csv"]
        entries.pop("evidence-list.csv")
        entries[INDEX_NAME] = json.dumps(index).encode()

    forged = cli(tmp_path, rewrite(built.zip, files=forge), "--public-key", built.key)
    assert forged.exit_code == 1
    assert f"{INDEX_NAME}: its signature does not verify with the custody key" in forged.output


def test_given_an_index_of_another_package_then_it_is_refused(built: Built, tmp_path):
    def other(entries: dict) -> None:
        index = json.loads(entries[INDEX_NAME])
        index["tree_head"] = {**index["tree_head"], "tree_size": index["tree_head"]["tree_size"] - 1}
        entries[INDEX_NAME] = json.dumps(index).encode()

    result = cli(tmp_path, rewrite(built.zip, files=other), "--public-key", built.key)
    assert result.exit_code == 1
    assert f"{INDEX_NAME}: it cites another tree head than manifest.json" in result.output
