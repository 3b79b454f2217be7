"""verify.html in a real browser, the plumbing of its tests (tests/media/test_verify_html*.py).

The module's package (tests/media/test_package.py's story, exported once per test module, its tree head timestamped
by the test TSA), a package of one chosen item and one with an item deleted under retention; the packages in the
national algorithms (issue 23: `national`, a mixed fleet of an SM2 and an Ed25519 phone, and a package of a server
that keeps the SM custody tree too); the `verify.html` the package carries, unzipped as a clerk would; Debian's
headless Chromium driven by Selenium through Debian's chromedriver. Nothing is downloaded: `.ci/run` installs the
browser and its driver; without them the tests are skipped locally and fail in CI. Screenshots go to
tests/artifacts/verify-html/ (git-ignored), or FIELDCASE_TEST_ARTIFACTS.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.bootstrap import create_app
from backend.core.config import Settings
from backend.core.secret_files import init_secrets
from media import verify_html
from media.custody.keys import Signer
from media.package_verify import verify_package
from sync.client import SHANGHAI, Phone
from tests.browser import chromium, need_browser
from tests.conftest import PASSWORD, TEST_KDF, Officers, _empty_tables
from tests.media.test_package import build
from tests.media.test_retention import Scene
from tests.wsgi_transport import session_for

ARTIFACTS = Path(os.environ.get("FIELDCASE_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts") / "verify-html"
WAIT = 60


@dataclass
class Base:
    """The module's package, with what its tampering needs: the server's custody key, the phones' ids."""

    zip: bytes
    key: str
    signer: Signer
    phone_a: str
    manifest: dict[str, Any]
    page: Path
    folder: Path
    part: bytes  # a package of one chosen item
    retained: bytes  # a package of a dismissed case, one of its items deleted under retention


@pytest.fixture(scope="module")
def base(database_url, tsa, tmp_path_factory) -> Base:
    folder = tmp_path_factory.mktemp("verify-html")
    settings = Settings(instance_dir=folder / "instance", database_url=database_url, password_kdf=TEST_KDF,
                        tsa_url=tsa.url, tsa_cert_file=str(tsa.ca)).resolved()
    init_secrets(settings)  # as `fieldcase init-secrets` (on PostgreSQL no key is made on first use)
    app = create_app(settings)
    db = app.extensions["fieldcase"].db
    try:
        client = app.test_client()
        built = build(app, client, Officers(db, client))
        part = client.get(f"/api/v1/cases/{built.case_id}/package", headers=built.hc,
                          query_string={"purpose": "移送公安", "evidence": built.e1})
        assert part.status_code == 200, part.data[:300]
        retained = _retained(Scene(app))
    finally:
        _empty_tables(db)
        db.dispose()
    archive = zipfile.ZipFile(io.BytesIO(built.zip))
    page = folder / verify_html.NAME
    page.write_bytes(archive.read(verify_html.NAME))  # the page a clerk unzips, not one made for the test
    return Base(zip=built.zip, key=built.key, signer=built.signer, phone_a=built.pa.device_id,
                manifest=json.loads(archive.read("manifest.json")), page=page, folder=folder, part=part.data,
                retained=retained)


def _retained(scene: Scene) -> bytes:
    """tests/media/test_retention.py's story: a dismissed case, its uncited item purged, then exported."""
    cid, case_id = scene.case()
    iid = scene.inspection(cid)
    cited, uncited = scene.stored(inspection_id=iid), scene.stored(inspection_id=iid)
    scene.cite(iid, cited)
    scene.move(case_id, "dismissed")
    assert [i.evidence_id for i in scene.purge().items] == [uncited]
    r = scene.client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": "复议答复"}, headers=scene.hc)
    assert r.status_code == 200, r.data[:300]
    return r.data


@dataclass
class National:
    """The packages in the national algorithms (issue 23), with what their tampering needs."""

    fleet: bytes  # an SM2 phone and an Ed25519 phone on one case; a server of the `intl` custody suite alone
    fleet_key: str
    fleet_signer: Signer
    sm2_device: str
    ed_device: str
    digests: dict[str, tuple[str, ...]]  # evidence id -> the digests its phone declared
    sm_tree: bytes  # tests/media/test_package.py's story on a server with FIELDCASE_CUSTODY_SUITES=intl,sm
    sm_tree_key: str
    sm_key: str  # that server's SM2 custody key, as it publishes it
    sm_signer: Signer
    page: Path
    folder: Path


class _FieldClock:
    """A phone's clock in the field: each reading five seconds after the last, starting three hours ago."""

    def __init__(self) -> None:
        self.now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=3)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=5)
        return self.now


def _fleet(app, folder: Path) -> tuple[bytes, str, Signer, str, str, dict[str, tuple[str, ...]]]:
    """tests/sync/test_sm2_devices.py's fleet: an SM2 phone (the reference client signing with GmSSL) and an
    Ed25519 phone each open the case offline, inspect, capture and upload, and record a finding; the SM2 phone
    declares one file by SM3 alone and one by both digests. The case is exported as a package."""
    client = app.test_client()
    db = app.extensions["fieldcase"].db
    officers = Officers(db, client)
    wang, chen = officers.make(name="王芳"), officers.make(name="陈刚")
    centre = {"name": "明德书画培训中心", "region": "330106"}
    phones, digests, case_ids = {}, {}, set()
    try:
        for officer, suite in ((wang, "sm"), (chen, "intl")):
            phone = Phone(folder / f"phone-{suite}", "http://fieldcase.test", session=session_for(app),
                          clock=_FieldClock(), sleep=lambda _s: None, max_attempts=1, suite=suite)
            phones[suite] = phone
            phone.login(officer.username, PASSWORD)
            phone.enrol(f"{suite} phone")
            cid = phone.open_case(centre, summary="联合检查")
            iid = phone.start_inspection(cid, officers=[wang.id, chen.id])
            declared = (("sm3",), ("sha256", "sm3")) if suite == "sm" else (("sha256",),)
            captured = []
            for n, names in enumerate(declared):
                data = f"photo {n} by {officer.id} ".encode() + uuid.uuid4().bytes * 300
                eid = phone.capture_evidence(data, "photo", "image/jpeg", inspection_id=iid, digests=names)
                digests[eid] = names
                captured.append(eid)
            phone.add_finding(iid, "unlicensed", "现场发现无证培训", evidence=captured)
            phone.end_inspection(iid, "violation_found")
            answer = phone.push()
            assert answer["counts"] == {"applied": 4 + len(declared)}, answer["results"]
            assert [u["status"] for u in phone.upload_pending()] == ["verified"] * len(declared)
            case_ids.add(answer["results"][0]["refs"]["case_id"])
        (case_id,) = case_ids  # the two offline case.opens merged into one case
        custodian = officers.make(roles=("custodian",))
        r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": "移送法制审核"},
                       headers=officers.headers(custodian))
        assert r.status_code == 200, r.data[:500]
        key = client.get("/api/v1/custody/public-key").json["public_key"]
        return (r.data, key, app.extensions["fieldcase"].signer, phones["sm"].device_id, phones["intl"].device_id,
                digests)
    finally:
        for phone in phones.values():
            phone.close()


@pytest.fixture(scope="module")
def national(database_url, tmp_path_factory) -> National:
    folder = tmp_path_factory.mktemp("verify-html-national")
    made = {}
    for suites in (("intl",), ("intl", "sm")):
        settings = Settings(instance_dir=folder / f"instance-{'-'.join(suites)}", database_url=database_url,
                            password_kdf=TEST_KDF, custody_suites=suites).resolved()
        init_secrets(settings)
        app = create_app(settings)
        db = app.extensions["fieldcase"].db
        try:
            if suites == ("intl",):
                made["fleet"] = _fleet(app, folder)
            else:
                client = app.test_client()
                built = build(app, client, Officers(db, client))
                sm_key = client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json["public_key"]
                made["sm"] = (built.zip, built.key, sm_key, built.signer)
        finally:
            _empty_tables(db)
            db.dispose()
    fleet, fleet_key, fleet_signer, sm2_device, ed_device, digests = made["fleet"]
    sm_tree, sm_tree_key, sm_key, sm_signer = made["sm"]
    page = folder / verify_html.NAME
    page.write_bytes(zipfile.ZipFile(io.BytesIO(fleet)).read(verify_html.NAME))
    return National(fleet=fleet, fleet_key=fleet_key, fleet_signer=fleet_signer, sm2_device=sm2_device,
                    ed_device=ed_device, digests=digests, sm_tree=sm_tree, sm_tree_key=sm_tree_key, sm_key=sm_key,
                    sm_signer=sm_signer, page=page, folder=folder)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    need_browser()
    browser = chromium(ARTIFACTS, window="1200,1400")
    yield browser
    browser.quit()


@dataclass
class Seen:
    """What the clerk sees once the page has finished."""

    verdict: str
    key: str
    problems: list[str]  # the English lines
    problems_zh: list[str]
    notes: list[str]
    summary: str


def open_and_pick(driver, base: Base | National, data: bytes, *, key: str | None = None, sm_key: str | None = None,
                  stream_above: int | None = None, name: str = "package.zip") -> Seen:
    """The clerk opens verify.html from disk, optionally enters the custody key (and the SM2 one), and picks the
    ZIP."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    package = base.folder / name
    package.write_bytes(data)
    driver.get(base.page.as_uri())
    if key:
        driver.find_element(By.ID, "key").send_keys(key)
    if sm_key:
        driver.find_element(By.ID, "sm-key").send_keys(sm_key)
    if stream_above is not None:
        driver.execute_script("document.documentElement.dataset.streamAbove = arguments[0]", str(stream_above))
    driver.find_element(By.ID, "package").send_keys(str(package))
    verdict = WebDriverWait(driver, WAIT, poll_frequency=0.025).until(
        lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict"), "the page's verdict")
    # Read in one round trip: a WebDriver call per list item cost up to 0.4 s a page.
    shown = driver.execute_script("""
        const lines = (id, lang) => Array.from(document.querySelectorAll(`#${id} li`),
                                               li => li.querySelector(`[lang='${lang}']`).textContent);
        return {key: document.getElementById("verdict").getAttribute("data-key"),
                problems: lines("problems", "en"), problems_zh: lines("problems", "zh-CN"),
                notes: lines("notes", "en"), summary: document.getElementById("summary").textContent};
    """)
    return Seen(verdict=verdict, **shown)


def in_python(data: bytes, key: str | None, sm_key: str | None = None) -> list[str]:
    """The problems `verify-package` reports for the same bytes, in the page's words for where the key came from."""
    report = verify_package(io.BytesIO(data), key, sm_public_key=sm_key)
    return [p.replace("given on the command line", "entered on this page") for p in report.problems]


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
