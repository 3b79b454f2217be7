"""The console's in-browser custody check in the national algorithms too (issue 23, item 4).

Given a server that keeps the SM tree beside the SHA-256 one (FIELDCASE_CUSTODY_SUITES=intl,sm), the console's
verification data take `suite=sm` as the API's custody routes do (the same schemas, the same answers, the same
refusals), and the evidence page checks the item's events in both trees in the browser: SHA-256 and Ed25519 with Web
Crypto, SM3 and SM2 with the sm-crypto-v2 the package verifier vendors, served from where it lives. Where the server
keeps no SM tree the page is what it was.

The browser tests drive Debian's headless Chromium (tests/browser.py) against the production server
(`fieldcase serve`) on a database of their own; tampering is done as an insider would, in the database.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select, update

from backend.bootstrap import create_app
from backend.core.config import Settings
from backend.core.crypto import SM
from backend.core.db import Database
from backend.core.models import CustodyEvent, SmMerkleNode, SmTreeHead
from backend.core.schema import prepare
from media import verify_html
from media.custody.keys import b64url
from media.custody.merkle import SM3_TREE
from media.custody.proofs import verify_inclusion
from tests.browser import chromium, need_browser
from tests.conftest import PASSWORD, TEST_KDF, Officers, _empty_tables, app_on
from tests.live import live_server
from tests.media.test_custody_sm import signed_bytes, with_sm
from tests.web.test_console import Scene, sign_in
from tests.web.test_console_browser import ARTIFACTS, run_verification, shot, wait_for
from tests.web.test_console_browser import sign_in as browser_sign_in

VENDORED = Path(verify_html.__file__).parent.joinpath(*verify_html.VENDOR)


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def sm_client(settings) -> Iterator:
    with app_on(with_sm(settings)) as application:
        yield application.test_client()


@pytest.fixture
def sm_scene(sm_client) -> Scene:
    return Scene(sm_client, Officers(sm_client.application.extensions["fieldcase"].db, sm_client))


# ---------------------------------------------------------------------------------------------- the data it fetches


def test_given_both_trees_when_the_console_asks_for_suite_sm_then_it_answers_what_the_api_answers(
        sm_client, sm_scene):
    client, scene = sm_client, sm_scene
    api = scene.field.headers
    sign_in(client, scene.reviewer)

    head = client.get("/console/api/custody/tree-head", query_string={"suite": "sm"}).json
    assert head == client.get("/api/v1/custody/tree-head", query_string={"suite": "sm"}, headers=api).json
    key = client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json  # the page's key, public
    assert SM.verify(b64d(key["public_key"]), signed_bytes(head), b64d(head["signature"]))
    intl = client.get("/console/api/custody/tree-head").json
    assert intl["tree_size"] == head["tree_size"] and intl["root_hash"] != head["root_hash"]

    events = client.get(f"/console/api/evidence/{scene.photo}/custody").json["events"]
    for event in events:
        query = {"suite": "sm", "leaf_index": event["leaf_index"], "tree_size": head["tree_size"]}
        proof = client.get("/console/api/custody/proofs/inclusion", query_string=query).json
        assert proof == client.get("/api/v1/custody/proofs/inclusion", query_string=query, headers=api).json
        assert verify_inclusion(SM3_TREE.leaf_hash(event["leaf"].encode()), event["leaf_index"], head["tree_size"],
                                [bytes.fromhex(p) for p in proof["proof"]], bytes.fromhex(head["root_hash"]),
                                tree=SM3_TREE)

    page = unescape(client.get(f"/console/evidence/{scene.photo}").get_data(as_text=True))
    assert 'data-sm-head-url="/console/api/custody/tree-head?suite=sm"' in page
    assert 'data-sm-key-url="/api/v1/custody/public-key?suite=sm"' in page
    assert '"userId": "1234567812345678"' in page and "结果（国密 SM3 树）" in page
    assert (page.index('src="/console/vendor/sm-crypto-v2.js"') < page.index('src="/console/vendor/sm2-rule.js"')
            < page.index("verify.js"))
    rule = client.get("/console/vendor/sm2-rule.js")  # verify.html's SM2 check itself, not a copy
    assert rule.status_code == 200 and rule.data == (VENDORED.parent.parent / "sm2_rule.js").read_bytes()
    assert b"function sm2SignatureHolds(" in rule.data
    script = client.get("/console/vendor/sm-crypto-v2.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.data == VENDORED.read_bytes()  # the package verifier's file itself, not a copy
    # a file of the release: asked again with its ETag, it is not sent again
    assert script.headers["Cache-Control"] == "no-cache" and script.headers["ETag"]
    again = client.get("/console/vendor/sm-crypto-v2.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize("query", [{"suite": "gm"}, {"suite": "sm", "leaf_index": "x", "tree_size": 1},
                                   {"suite": "sm", "tree_size": 1, "sort": "asc"}])
def test_given_a_bad_query_when_the_console_is_asked_then_it_refuses_it_in_the_apis_words(sm_client, sm_scene, query):
    sign_in(sm_client, sm_scene.reviewer)
    route = "proofs/inclusion" if "leaf_index" in query else "tree-head"
    console = sm_client.get(f"/console/api/custody/{route}", query_string=query)
    api = sm_client.get(f"/api/v1/custody/{route}", query_string=query, headers=sm_scene.field.headers)
    assert console.status_code == api.status_code == 422
    assert console.json == api.json and console.json["errors"]["query"]


def test_given_no_sm_tree_when_the_console_is_asked_for_it_then_404_and_the_page_checks_the_intl_tree_alone(
        client, officers):
    scene = Scene(client, officers)
    sign_in(client, scene.reviewer)
    refused = client.get("/console/api/custody/tree-head", query_string={"suite": "sm"})
    assert refused.status_code == 404 and "FIELDCASE_CUSTODY_SUITES" in refused.json["message"]
    proof = client.get("/console/api/custody/proofs/inclusion", query_string={"suite": "sm", "leaf_index": 0,
                                                                                "tree_size": 1})
    assert proof.status_code == 404 and proof.json["errors"] == {"suite": ["sm is not enabled on this server"]}

    page = client.get(f"/console/evidence/{scene.photo}").get_data(as_text=True)
    assert 'data-key-url="/api/v1/custody/public-key"' in page and "verify.js" in page
    assert "data-sm" not in page and "sm-crypto-v2" not in page and "国密" not in page


# ---------------------------------------------------------------------------------------------- in the browser


@dataclass
class Served:
    """The production server on a database of the module's own, keeping both trees, and what the page shows."""

    console: str
    username: str
    password: str
    photo: str
    db: Database


@pytest.fixture(scope="module")
def served(fresh_database_url, tmp_path_factory) -> Iterator[Served]:
    need_browser()
    url = fresh_database_url()
    db = Database(url)
    prepare(db)
    db.dispose()
    folder = tmp_path_factory.mktemp("console-sm")
    settings = with_sm(Settings(instance_dir=folder / "instance", database_url=url, password_kdf=TEST_KDF).resolved())
    app = create_app(settings)
    db = app.extensions["fieldcase"].db
    try:
        client = app.test_client()
        scene = Scene(client, Officers(db, client))
        with live_server(settings, folder / "server.log", workers=1, FIELDCASE_CUSTODY_SUITES="intl,sm") as base:
            yield Served(console=base + "/console/", username=scene.reviewer.username, password=PASSWORD,
                         photo=scene.photo, db=db)
    finally:
        _empty_tables(db)
        db.dispose()


@pytest.fixture(scope="module")
def driver(served):
    browser = chromium(ARTIFACTS, window="1280,1000")
    yield browser
    browser.quit()


@pytest.fixture
def page(driver, served):
    """The photo's evidence page, signed in as the reviewer, before verifying."""
    from selenium.webdriver.common.by import By

    driver.get(served.console + "login")
    driver.delete_all_cookies()
    browser_sign_in(driver, served)
    driver.get(served.console + f"evidence/{served.photo}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "verify-button"), "the evidence page")
    driver.get_log("browser")  # only what verifying logs is looked at
    return driver


def verdicts(driver) -> dict[str, dict[str, str]]:
    """Each event's row: leaf index -> its verdict in each tree (`data-intl`, `data-sm`) and its text."""
    from selenium.webdriver.common.by import By

    return {r.find_elements(By.TAG_NAME, "td")[0].text: {"intl": r.get_attribute("data-intl"),
                                                         "sm": r.get_attribute("data-sm"), "text": r.text}
            for r in driver.find_elements(By.CSS_SELECTOR, "#verify-results tbody tr")}


def summary(driver) -> tuple[dict[str, str | None], str]:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, "verify-summary")
    names = ("verdict", "intl", "signature", "sm", "sm-signature")
    return {name: element.get_attribute(f"data-{name}") for name in names}, element.text


def test_given_both_trees_when_a_reviewer_verifies_an_item_then_the_intl_and_the_sm_checks_both_pass(page):
    assert run_verification(page) == "pass"
    states, text = summary(page)
    assert states == {"verdict": "pass", "intl": "pass", "signature": "valid", "sm": "pass", "sm-signature": "valid"}
    assert "Ed25519 签名有效" in text and "国密树头 SM2 签名有效" in text and "两棵签名树" in text
    rows = verdicts(page)
    assert len(rows) >= 4 and all(r["intl"] == r["sm"] == "pass" for r in rows.values())
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # the vendored library runs under the console's CSP without a complaint
    shot(page, "sm-01-evidence-verified-in-both-trees")


def _latest_sm_head(db: Database) -> SmTreeHead:
    with db.session() as s:
        head = s.scalars(select(SmTreeHead).order_by(SmTreeHead.tree_size.desc())).first()
        assert head is not None
        s.expunge(head)
        return head


def test_given_an_sm_head_whose_signature_was_altered_then_the_sm_check_fails_and_says_so(page, served):
    run_verification(page)  # the head of the log as it is, issued in both trees
    head = _latest_sm_head(served.db)
    raw = bytearray(b64d(head.signature))
    raw[5] ^= 0x01  # a bit of r: still a signature's shape
    with served.db.transaction() as s:
        s.execute(update(SmTreeHead).where(SmTreeHead.tree_size == head.tree_size).values(signature=b64url(raw)))
    try:
        assert run_verification(page) == "fail"
        states, text = summary(page)
        assert states == {"verdict": "fail", "intl": "pass", "signature": "valid", "sm": "fail",
                          "sm-signature": "invalid"}
        assert "国密树头 SM2 签名无效" in text and f"大小 {head.tree_size}" in text
        assert all(r["intl"] == r["sm"] == "pass" for r in verdicts(page).values())  # the proofs still hold
        shot(page, "sm-02-sm-head-signature-altered")
    finally:
        with served.db.transaction() as s:
            s.execute(update(SmTreeHead).where(SmTreeHead.tree_size == head.tree_size)
                      .values(signature=head.signature))


def test_given_a_tampered_sm_proof_then_the_events_sm_check_fails_and_says_so(page, served):
    run_verification(page)
    size = _latest_sm_head(served.db).tree_size
    with served.db.session() as s:
        declared = s.scalar(select(CustodyEvent.leaf_index).where(CustodyEvent.evidence_id == served.photo,
                                                                  CustodyEvent.action == "declared"))
    sibling = declared ^ 1  # the first hash of the declaration's audit path
    assert sibling < size
    with served.db.session() as s:
        kept = s.get(SmMerkleNode, (0, sibling)).hash
    with served.db.transaction() as s:
        s.execute(update(SmMerkleNode).where(SmMerkleNode.level == 0, SmMerkleNode.index == sibling)
                  .values(hash=bytes(32)))
    try:
        assert run_verification(page) == "fail"
        states, text = summary(page)
        assert states == {"verdict": "fail", "intl": "pass", "signature": "valid", "sm": "fail",
                          "sm-signature": "valid"}
        assert re.search(r"国密 SM3 树中 \d+ 个保管事件未通过核验", text), text
        rows = verdicts(page)
        assert rows[str(declared)]["sm"] == "fail" and "根哈希" in rows[str(declared)]["text"]
        assert all(r["intl"] == "pass" for r in rows.values())
        shot(page, "sm-03-sm-proof-tampered")
    finally:
        with served.db.transaction() as s:
            s.execute(update(SmMerkleNode).where(SmMerkleNode.level == 0, SmMerkleNode.index == sibling)
                      .values(hash=kept))
