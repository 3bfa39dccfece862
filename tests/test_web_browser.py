"""The customer pages in headless Chromium (Selenium): a 375 px phone without horizontal
overflow, no Content-Security-Policy violation, and the unsubscribe buttons clicked for real."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.store import Store
from tests import web_site
from tests.web_site import ENGLISH, JAPANESE, PROBE, Site

site = web_site.site  # the fixture: a real uvicorn over a seeded SQLite store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LISTENER})
        yield driver
    finally:
        driver.quit()


# Chromium logs each blocked action as a "security" entry, a moment after the page loads; the
# page records what its securitypolicyviolation events saw (a listener added through CDP, which
# the policy does not govern). Both are read, after a settling time.
LISTENER = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def csp_violations(driver: Any, settle: float = 1.0) -> list[str]:
    time.sleep(settle)
    logged = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry.get("source") == "security" or "Content Security Policy" in entry["message"]
    ]
    seen = driver.execute_script("return window.__violations || ['(listener missing)']")
    return logged + [f"event: {v}" for v in seen]


def test_the_browser_reports_a_policy_violation_when_there_is_one(browser: Any, site: Site) -> None:
    browser.get_log("browser")  # start from an empty log
    browser.get(site.base_url + PROBE)
    violations = csp_violations(browser)
    assert any("style-src" in v for v in violations if not v.startswith("event:")), violations
    assert any("script-src" in v for v in violations if not v.startswith("event:")), violations
    assert any(v.startswith("event: style-src") for v in violations), violations
    assert browser.title == "probe"  # the inline script did not run


@pytest.mark.parametrize(("recipient", "lang"), [(ENGLISH, "en"), (JAPANESE, "ja")])
def test_the_tracking_page_fits_a_phone_and_keeps_to_the_policy(
    browser: Any, site: Site, recipient: str, lang: str
) -> None:
    browser.get_log("browser")
    browser.get(site.tracking(recipient))
    assert browser.execute_script("return document.documentElement.lang") == lang
    width, scroll = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]"
    )
    assert width == 375
    assert scroll <= width, f"horizontal overflow: {scroll} > {width}"
    wide = browser.execute_script(
        "return Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)"
        ".map(e => e.tagName + ':' + e.textContent.trim().slice(0, 40))"
    )
    assert wide == []
    # The stylesheet from /static was allowed and applied: the shop's banner is blue.
    banner = browser.execute_script(
        "return getComputedStyle(document.querySelector('.shop')).backgroundColor"
    )
    assert banner == "rgb(29, 79, 145)"
    assert browser.execute_script("return document.querySelectorAll('.journey li').length") >= 5
    assert csp_violations(browser) == []


def _state(site: Site, recipient: str) -> tuple[bool, bool]:
    async def read(store: Store) -> tuple[bool, bool]:
        return (
            bool(await store.suppressed_among([recipient])),
            bool(await store.suppressed_shipments_among([(recipient, site.number)])),
        )

    return site.store_call(read)


def press(driver: Any, value: str) -> None:
    """Click the button with this value and wait for the page its form POST answers with."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.CSS_SELECTOR, f'button[value="{value}"]')
    button.click()
    # While the page is replaced, chromedriver may answer "Node … does not belong to the
    # document" instead of "stale element": both mean the old page is going.
    wait = WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))
    wait.until(expected_conditions.staleness_of(button))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_unsubscribing_by_clicking_the_buttons(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    browser.get_log("browser")
    browser.get(site.unsubscribe(JAPANESE))
    assert browser.execute_script("return document.documentElement.lang") == "ja"
    assert _state(site, JAPANESE) == (False, False)  # the page itself changed nothing
    press(browser, "parcel")
    assert "停止しました" in browser.find_element(By.CSS_SELECTOR, '[role="status"]').text
    assert _state(site, JAPANESE) == (False, True)
    press(browser, "resubscribe-parcel")
    assert "再開しました" in browser.find_element(By.CSS_SELECTOR, '[role="status"]').text
    assert _state(site, JAPANESE) == (False, False)
    press(browser, "all")
    assert _state(site, JAPANESE) == (True, False)
    assert browser.find_elements(By.CSS_SELECTOR, 'button[value="resubscribe-all"]')
    width, scroll = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]"
    )
    assert scroll <= width
    assert csp_violations(browser) == []
