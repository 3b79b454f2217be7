"""Debian's headless Chromium, driven through its chromedriver (Selenium): the one way the tests open a browser.

Nothing is downloaded at test time (.ci/run installs the packages): Selenium Manager is told to stay offline.
The browser log is kept, so a test can look for CSP violations and script errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium(artifacts: Path, *, window: str = "1280,1000") -> Any:
    """A new headless Chromium (zh-CN), its driver's log written to `artifacts`; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
    artifacts.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={window}", "--lang=zh-CN", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations and script errors
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(artifacts / "chromedriver.log"))
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(60)
    return browser


def need_browser() -> None:
    """Skip without Debian's Chromium and its driver, except in CI, where their absence is a failure."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
