"""verify.html in a real browser, the plumbing of its tests (tests/media/test_verify_html*.py).

The module's package (tests/media/test_package.py's story, exported once per test module, its tree head timestamped
by the test TSA), a package of one chosen item and one with an item deleted under retention; the `verify.html` the
package carries, unzipped as a clerk would; Debian's headless Chromium driven by Selenium through Debian's
chromedriver. Nothing is downloaded: `.ci/run` installs the browser and its driver; without them the tests are
skipped locally and fail in CI. Screenshots go to tests/artifacts/verify-html/ (git-ignored), or
FIELDCASE_TEST_ARTIFACTS.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.bootstrap import create_app
from backend.core.config import Settings
from backend.core.secret_files import init_secrets
from media import verify_html
from media.custody.keys import Signer
from media.package_verify import verify_package
from tests.browser import chromium, need_browser
from tests.conftest import TEST_KDF, Officers, _empty_tables
from tests.media.test_package import build
from tests.media.test_retention import Scene

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


def open_and_pick(driver, base: Base, data: bytes, *, key: str | None = None, stream_above: int | None = None,
                  name: str = "package.zip") -> Seen:
    """The clerk opens verify.html from disk, optionally enters the custody key, and picks the ZIP."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    package = base.folder / name
    package.write_bytes(data)
    driver.get(base.page.as_uri())
    if key:
        driver.find_element(By.ID, "key").send_keys(key)
    if stream_above is not None:
        driver.execute_script("document.documentElement.dataset.streamAbove = arguments[0]", str(stream_above))
    driver.find_element(By.ID, "package").send_keys(str(package))
    verdict = WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict"), "the page's verdict")

    def lines(list_id: str, lang: str) -> list[str]:
        return [li.find_element(By.CSS_SELECTOR, f"[lang='{lang}']").get_attribute("textContent")
                for li in driver.find_elements(By.CSS_SELECTOR, f"#{list_id} li")]

    return Seen(verdict=verdict, key=driver.find_element(By.ID, "verdict").get_attribute("data-key"),
                problems=lines("problems", "en"), problems_zh=lines("problems", "zh-CN"), notes=lines("notes", "en"),
                summary=driver.find_element(By.ID, "summary").get_attribute("textContent"))


def in_python(data: bytes, key: str | None) -> list[str]:
    """The problems `verify-package` reports for the same bytes, in the page's words for where the key came from."""
    report = verify_package(io.BytesIO(data), key)
    return [p.replace("given on the command line", "entered on this page") for p in report.problems]


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
