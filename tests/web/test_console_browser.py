"""The review console in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, against `fieldcase demo --serve` (the production server, left running on the demo's data).

A reviewer signs in, opens the merged case, sees the 45 s gap on the inspection's timeline, and verifies a
photo's custody log in the browser (Web Crypto SHA-256 and Ed25519); after a custody row is altered in the
database, the same check in the browser fails. The keyboard alone signs in and marks an issue reviewed;
every input has a label and all text has enough contrast on every page.

Nothing is downloaded here: the browser and its driver are Debian packages (`.ci/run` installs them when the
machine lacks them; without them these tests are skipped locally and fail in CI). Screenshots are saved in
`tests/artifacts/console/` (git-ignored), or in FIELDCASE_TEST_ARTIFACTS when set.

The demo brings its own SQLite database whatever FIELDCASE_TEST_DATABASE_URL says, so on the PostgreSQL leg of
the suite these tests would repeat the SQLite leg exactly: they are skipped there.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from backend.liveserver import free_port
from tests.browser import chromium, need_browser
from tests.conftest import PG_ENV

ARTIFACTS = Path(os.environ.get("FIELDCASE_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts" / "console")
DEMO_STARTUP = 300  # seconds: the demo plays its whole story first (about 30 s on an idle machine)
WAIT = 30

pytestmark = pytest.mark.skipif(bool(os.environ.get(PG_ENV)),
                                reason="the demo runs on its own SQLite database: the SQLite leg already ran these")


# ---------------------------------------------------------------------------------------------- the demo server


@dataclass
class Demo:
    process: subprocess.Popen
    console: str
    username: str
    password: str
    custodian: str
    database: Path
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.console.removesuffix("/console/")


BANNER = (("console", r"^review console: (\S+)$"), ("reviewer", r"^reviewer login: (\S+) / (\S+)"),
          ("custodian", r"^custodian login: (\S+) / "), ("database", r"^database: (.+)$"),
          ("ready", r"^press Ctrl-C to stop$"))


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """`fieldcase demo --serve` in a child process, until its banner says where the console is."""
    need_browser()
    env = {k: v for k, v in os.environ.items() if k != PG_ENV}
    process = subprocess.Popen([sys.executable, "-m", "backend", "demo", "--serve", "--port", str(free_port())],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + DEMO_STARTUP
    found: dict[str, str] = {}
    served = False
    try:
        while "ready" not in found:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("fieldcase demo --serve did not come up in time:\n" + "\n".join(output[-40:]))
            if line is None:
                pytest.fail("fieldcase demo --serve ended early:\n" + "\n".join(output[-40:]))
            output.append(line)
            for key, pattern in BANNER:
                match = re.match(pattern, line)
                if match:
                    found[key] = line if key == "ready" else match.group(1)
                    if key == "reviewer":
                        found["password"] = match.group(2)
        yield Demo(process=process, console=found["console"], username=found["reviewer"], password=found["password"],
                   custodian=found["custodian"], database=Path(found["database"]), output=output)
        served = True
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            output.append(line)
    if served:  # Ctrl-C stops the server and the demo ends as it always does
        assert process.returncode == 0, "\n".join(output[-20:])
        assert output[-2:] == ["stopping the server", "demo finished: OK"], output[-5:]


# ---------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def driver(demo):
    browser = chromium(ARTIFACTS, window="1280,1000")
    yield browser
    browser.quit()


@pytest.fixture
def browser(driver, demo):
    """The module's browser with no session: each test signs in as it needs."""
    driver.get(demo.console + "login")
    driver.delete_all_cookies()
    return driver


def shot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message=what)


def sign_in(driver, demo: Demo, username: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    driver.get(demo.console)
    assert "/console/login" in driver.current_url
    driver.find_element(By.ID, "username").send_keys(username or demo.username)
    driver.find_element(By.ID, "password").send_keys(demo.password)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(driver, lambda d: "/console/cases" in d.current_url, "signed in, on the case list")


def open_morning_inspection(driver, demo: Demo) -> str:
    """From the case list: the merged education case, then the inspection whose recording has a gap."""
    from selenium.webdriver.common.by import By

    sign_in(driver, demo)
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#case-list tbody tr") if "群众举报" in r.text)
    row.find_element(By.CSS_SELECTOR, "a").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "ledger"), "the case page")
    inspection = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#inspections tbody tr")
                      if r.find_elements(By.CSS_SELECTOR, ".coverage-gaps"))
    inspection.find_element(By.CSS_SELECTOR, "a").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "timeline-svg"), "the inspection page")
    return driver.current_url


def run_verification(driver) -> str:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "verify-button").click()
    verdict = wait_for(driver, lambda d: d.find_element(By.ID, "verify-summary").get_attribute("data-verdict"),
                       "the in-browser verification to finish")
    driver.execute_script("document.getElementById('verify').scrollIntoView()")
    return verdict


# ---------------------------------------------------------------------------------------------- the tests


def test_demo_serve_prints_the_console_address_and_a_reviewers_login(demo):
    assert demo.console.startswith("http://127.0.0.1:") and demo.console.endswith("/console/")
    assert demo.username == "zhou.hui" and demo.password
    assert demo.database.exists()
    page = requests.get(demo.console + "login", timeout=10)
    assert page.status_code == 200 and 'id="login-form"' in page.text
    assert any(line.startswith("[ok] ") for line in demo.output) and not any("[FAILED]" in x for x in demo.output)


def test_a_reviewer_signs_in_opens_the_case_and_sees_the_gap_on_the_timeline(browser, demo):
    from selenium.webdriver.common.by import By

    open_morning_inspection(browser, demo)
    case_link = browser.find_element(By.CSS_SELECTOR, "dl.facts a[href*='/console/cases/']")
    assert case_link.text.startswith("case_")  # the case it belongs to

    gaps = browser.find_elements(By.CSS_SELECTOR, "#timeline-svg g.gap")
    assert [g.get_attribute("data-seconds") for g in gaps] == ["45.0"]
    label = gaps[0].find_element(By.CSS_SELECTOR, "text.gap-label")
    assert label.text == "45.0 s" and label.is_displayed()
    assert gaps[0].get_attribute("class") == "gap"  # not explained: drawn red
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-svg a.clip")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-svg a.photo[data-exif='yes']")) == 2
    assert browser.find_element(By.ID, "coverage-status").get_attribute("data-status") == "gaps"
    assert "45.0" in browser.find_element(By.ID, "gap-list").text
    browser.execute_script("document.getElementById('timeline').scrollIntoView()")
    shot(browser, "01-inspection-timeline-gap")


def test_in_browser_verification_passes_and_fails_once_a_custody_row_is_altered(browser, demo):
    from selenium.webdriver.common.by import By

    open_morning_inspection(browser, demo)
    photo = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") if "照片" in r.text)
    photo.find_element(By.CSS_SELECTOR, "a").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "verify-button"), "the evidence page")
    evidence_id = browser.find_element(By.ID, "verify").get_attribute("data-evidence")

    assert run_verification(browser) == "pass"
    summary = browser.find_element(By.ID, "verify-summary")
    assert summary.get_attribute("data-signature") == "valid"  # Ed25519 checked by this browser's Web Crypto
    rows = browser.find_elements(By.CSS_SELECTOR, "#verify-results tbody tr")
    assert len(rows) >= 4 and {r.get_attribute("data-verdict") for r in rows} == {"pass"}
    shot(browser, "02-evidence-verified-in-browser")

    with sqlite3.connect(demo.database, timeout=30) as db:
        index, leaf = db.execute("SELECT leaf_index, leaf FROM custody_events WHERE evidence_id = ? "
                                 "AND action = 'declared'", (evidence_id,)).fetchone()
        assert '"kind":"photo"' in leaf
        db.execute("UPDATE custody_events SET leaf = ? WHERE leaf_index = ?",
                   (leaf.replace('"kind":"photo"', '"kind":"video"'), index))
    try:
        browser.refresh()
        wait_for(browser, lambda d: d.find_elements(By.ID, "verify-button"), "the evidence page again")
        assert run_verification(browser) == "fail"
        results = {r.find_elements(By.TAG_NAME, "td")[0].text: r.get_attribute("data-verdict")
                   for r in browser.find_elements(By.CSS_SELECTOR, "#verify-results tbody tr")}
        assert results.pop(str(index)) == "fail"
        assert set(results.values()) == {"pass"}  # only the altered event fails
        failed = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#verify-results tbody tr")
                      if r.get_attribute("data-verdict") == "fail")
        assert "根哈希" in failed.text
        shot(browser, "03-evidence-tampered-fails")
    finally:
        with sqlite3.connect(demo.database, timeout=30) as db:
            db.execute("UPDATE custody_events SET leaf = ? WHERE leaf_index = ?", (leaf, index))


def _from_the_top(driver) -> None:
    """Put the keyboard's starting point at the top of the page, as a fresh load without autofocus would."""
    driver.execute_script("document.body.setAttribute('tabindex', '-1'); document.body.focus();"
                          "document.body.removeAttribute('tabindex');")


def _focused(driver) -> str:
    element = driver.switch_to.active_element
    return element.get_attribute("id") or element.get_attribute("class") or element.tag_name


def test_the_keyboard_alone_signs_in(browser, demo):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(demo.console + "login")
    # autofocus: the form is ready to type into. Chromium applies it at its next rendering step, which on a busy
    # machine can come after `get` has returned (CI once saw `body` focused), so it is waited for, a few seconds.
    wait_for(browser, lambda d: _focused(d) == "username", "the username field takes the focus by itself")
    assert _focused(browser) == "username"
    _from_the_top(browser)
    order = []
    for _ in range(6):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        order.append(_focused(browser))
    assert order == ["skip", "home", "lang", "username", "password", "login-submit"], order

    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert _focused(browser) == "username"
    ActionChains(browser).send_keys(demo.username).send_keys(Keys.TAB).send_keys(demo.password) \
        .send_keys(Keys.TAB).perform()
    assert _focused(browser) == "login-submit"
    shot(browser, "04-keyboard-sign-in")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: "/console/cases" in d.current_url, "signed in by keyboard")


def test_the_keyboard_alone_marks_an_audit_issue_reviewed(browser, demo):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, demo)
    browser.get(demo.console + "audit?reviewed=no")
    first = browser.find_element(By.CSS_SELECTOR, "#issues li.issue")
    key, textarea_id = first.get_attribute("data-key"), first.find_element(By.TAG_NAME, "textarea").get_attribute("id")
    _from_the_top(browser)
    visited = []
    for _ in range(80):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        visited.append(_focused(browser))
        if visited[-1] == textarea_id:
            break
    assert visited[-1] == textarea_id, visited
    # The filters come before the queue, and the issue's own links before its comment.
    assert visited.index("a-kind") < visited.index("a-reviewed") < visited.index("a-from") < len(visited) - 1
    ActionChains(browser).send_keys("已复核，录像缺失原因已查明").send_keys(Keys.TAB).perform()
    button = browser.switch_to.active_element
    assert button.tag_name == "button" and button.text == "标记为已审查"
    shot(browser, "05-keyboard-mark-reviewed")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".message.ok"), "the review to be logged")
    assert key not in [li.get_attribute("data-key") for li in browser.find_elements(By.CSS_SELECTOR, "li.issue")]
    browser.get(demo.console + "audit?reviewed=yes")
    reviewed = {li.get_attribute("data-key"): li.text for li in browser.find_elements(By.CSS_SELECTOR, "li.issue")}
    assert "已复核，录像缺失原因已查明" in reviewed[key]


UNLABELLED = """
return Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length))
  .filter(el => !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120));
"""

# WCAG 2 contrast of each visible HTML text against the first opaque background behind it (SVG text is checked
# from the timeline's palette in tests/web/test_console.py). Large text (24px, or 18.66px bold) needs 3:1.
LOW_CONTRAST = """
function rgb(text) {
  const m = text.match(/rgba?\\(([\\d.]+), ([\\d.]+), ([\\d.]+)(?:, ([\\d.]+))?\\)/);
  return m ? [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]] : null;
}
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(el) {
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c && c[3] > 0.5) return c;
  }
  return [255, 255, 255, 1];
}
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  if (el.closest('svg') || ['SCRIPT', 'STYLE'].includes(el.tagName)) continue;
  const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const rect = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  if (!rect.width || !rect.height || style.visibility === 'hidden' || el.closest('.visually-hidden')) continue;
  const fg = rgb(style.color), bg = background(el);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
  const needed = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
  const text = el.textContent.trim().slice(0, 40);
  if (ratio < needed) bad.push(`${ratio.toFixed(2)} ${el.tagName} ${style.color} on ${bg} "${text}"`);
}
return bad;
"""


def test_every_input_has_a_label_and_all_text_has_enough_contrast_on_every_page(browser, demo):
    from selenium.webdriver.common.by import By

    browser.get(demo.console + "login")
    browser.get_log("browser")  # what earlier tests left there
    pages = {"login": (browser.execute_script(UNLABELLED), browser.execute_script(LOW_CONTRAST))}
    inspection = open_morning_inspection(browser, demo)
    evidence = browser.find_element(By.CSS_SELECTOR, "#files tbody tr a").get_attribute("href")
    case = browser.find_element(By.CSS_SELECTOR, "dl.facts a[href*='/console/cases/']").get_attribute("href")
    for name, url in (("cases", demo.console + "cases"), ("case", case), ("inspection", inspection),
                      ("evidence", evidence), ("audit", demo.console + "audit"),
                      ("custody", demo.console + "custody"), ("cases-en", demo.console + "cases?lang=en")):
        browser.get(url)
        pages[name] = (browser.execute_script(UNLABELLED), browser.execute_script(LOW_CONTRAST))
    shot(browser, "06-cases-english")
    browser.get(demo.console + "cases?lang=zh")
    browser.get(case)
    shot(browser, "07-case-page")

    problems = {name: found for name, found in pages.items() if found[0] or found[1]}
    assert problems == {}, problems
    assert len(pages) == 8
    # No page broke its own Content-Security-Policy or threw a script error on the way.
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
