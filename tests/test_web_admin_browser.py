"""The operator board in headless Chromium with JavaScript off: log in, filter, acknowledge an alert
by clicking, no horizontal scrolling on a 375 px phone, tracking numbers on one line at 1280 and
375 px, the health banners, and the confirmation before unsubscribing from all mail."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.types import ASGIApp

from notifier.store import Store
from notifier.web.admin import admin_routes
from notifier.web.app import build_app
from notifier.web.state import DaemonView
from tests.test_web_admin import NUMBER_A, NUMBER_B, PASSWORD, View, board_settings, seed
from tests.test_web_admin_need import DELIVERED, watch_delivered
from tests.web_server import serving_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def need_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)


@pytest.fixture
def board(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, str, dict[str, int]]]:
    """The board over a seeded SQLite store, served from a thread: (base URL, database URL, ids)."""
    path = tmp_path / "board.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    ids: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def app() -> AsyncIterator[ASGIApp]:
        store = await Store.open(url)
        try:
            ids.update(await seed(store, dt.datetime.now(dt.UTC)))
            view = cast(DaemonView, View(store, board_settings()))
            yield build_app(view, extra_routes=admin_routes(view))
        finally:
            await store.close()

    with serving_in_thread(app) as base:
        yield base, url, ids


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def open_alerts(url: str) -> set[int]:
    async def read() -> set[int]:
        store = await Store.open(url)
        try:
            return {a.id for a in await store.alerts()}
        finally:
            await store.close()

    return asyncio.run(read())


def overflow(driver: Any, width: int) -> tuple[float, float]:
    """(content width, viewport width) at a phone's `width`, measured by the browser itself
    through DevTools: the page runs no script."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    driver.refresh()
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    return metrics["cssContentSize"]["width"], metrics["cssLayoutViewport"]["clientWidth"]


@pytest.mark.timeout(180)
def test_log_in_filter_acknowledge_and_fit_a_phone(
    browser: Any, board: tuple[str, str, dict[str, int]]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait(condition: Any) -> None:
        WebDriverWait(browser, 30).until(condition)

    base, url, ids = board
    alert_id = ids["poll_failed"]
    browser.get(f"{base}/admin/")
    assert browser.current_url == f"{base}/admin/login"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Operator board"
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(until.url_to_be(f"{base}/admin/"))
    shipments = browser.find_element(By.ID, "shipments")
    assert NUMBER_A in shipments.text
    assert NUMBER_B in shipments.text

    Select(browser.find_element(By.ID, "stage")).select_by_value("pending")
    browser.find_element(By.ID, "filter").click()
    wait(until.url_contains("stage=pending"))
    shipments = browser.find_element(By.ID, "shipments")
    assert NUMBER_B in shipments.text
    assert NUMBER_A not in shipments.text

    row = browser.find_element(By.ID, f"alert-{alert_id}")
    row.find_element(By.TAG_NAME, "button").click()
    wait(until.presence_of_element_located((By.ID, "flash")))
    # Back on the same filtered board, with the one-line result.
    assert browser.current_url == f"{base}/admin/?stage=pending"
    assert browser.find_element(By.ID, "flash").text == f"alert {alert_id} acknowledged"
    assert not browser.find_elements(By.ID, f"alert-{alert_id}")
    assert alert_id not in open_alerts(url)
    assert ids["smtp_login"] in open_alerts(url)

    browser.get(f"{base}/admin/")
    content, viewport = overflow(browser, 375)
    assert viewport == 375
    assert content <= viewport, f"the board is {content}px wide at {viewport}px"


@pytest.fixture
def needy_board(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, str]]:
    """The seeded board plus a delivered EMS parcel, with the kill switch on and the circuit
    open: (base URL, database URL)."""
    path = tmp_path / "needy.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"

    @contextlib.asynccontextmanager
    async def app() -> AsyncIterator[ASGIApp]:
        store = await Store.open(url)
        try:
            await seed(store, dt.datetime.now(dt.UTC))
            await watch_delivered(store)
            view = View(store, board_settings())
            view.notifier.paused = True
            view.breaker.failure(dt.datetime.now(dt.UTC), retry_after=600)
            daemon = cast(DaemonView, view)
            yield build_app(daemon, extra_routes=admin_routes(daemon))
        finally:
            await store.close()

    with serving_in_thread(app) as base:
        yield base, url


def fragments(driver: Any, selector: str) -> list[int]:
    """How many line boxes each element matching `selector` is laid out in (2 or more: it
    wraps), asked of the browser through DevTools: the page runs no script."""
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    nodes = driver.execute_cdp_cmd("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]
    return [len(driver.execute_cdp_cmd("DOM.getContentQuads", {"nodeId": n})["quads"]) for n in nodes]


def at_width(driver: Any, width: int) -> tuple[float, float]:
    """(content width, viewport width) of the page reloaded at `width` (a phone below 600)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.refresh()
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    return metrics["cssContentSize"]["width"], metrics["cssLayoutViewport"]["clientWidth"]


@pytest.mark.timeout(240)
def test_numbers_never_wrap_banners_show_and_unsubscribing_asks_first(
    browser: Any, needy_board: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Any) -> None:
        WebDriverWait(browser, 30).until(condition)

    base, url = needy_board
    browser.get(f"{base}/admin/login")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(until.url_to_be(f"{base}/admin/"))
    # Each tracking number in the shipment rows (the first thing in the row's first cell), and an
    # alert's subject when it is a parcel's number.
    numbers = "tr[id^=shipment-] td:first-child > :first-child, #alerts td[data-label=Subject] > .number"
    for path in ("/admin/", f"/admin/shipments/{DELIVERED}"):
        browser.get(f"{base}{path}")
        banners = browser.find_element(By.ID, "banners").text
        assert "Customer mail is paused (kill switch)" in banners, path
        assert "Japan Post's site is not answering" in banners, path
        for width in (1280, 375):
            content, viewport = at_width(browser, width)
            assert width - 20 <= viewport <= width  # less a desktop scroll bar
            assert content <= viewport, f"{path} is {content}px wide at {viewport}px"
            if path == "/admin/":
                lines = fragments(browser, numbers)
                assert len(lines) == 4  # three shipments, one alert about a parcel
                assert lines == [1, 1, 1, 1], f"a number wraps at {width}px: {lines}"
            else:
                assert fragments(browser, "h1 .number") == [1]
    # The delivered parcel's row offers no Poll now; the others do.
    at_width(browser, 1280)
    browser.get(f"{base}/admin/")
    row = browser.find_element(By.ID, f"shipment-{DELIVERED}")
    assert not row.find_elements(By.XPATH, ".//button[text()='Poll now']")
    assert browser.find_element(By.ID, f"shipment-{NUMBER_A}").find_elements(
        By.XPATH, ".//button[text()='Poll now']"
    )

    # Unsubscribe: a page that asks first; the box must be ticked (no script needed for that).
    row = browser.find_element(By.ID, f"shipment-{NUMBER_B}")
    row.find_element(By.XPATH, ".//button[text()='Unsubscribe']").click()
    wait(until.presence_of_element_located((By.ID, "confirm-all")))
    assert "from all mail?" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.ID, "unsubscribe-all").click()
    assert browser.find_elements(By.ID, "confirm-all")  # not ticked: the form did not go
    assert suppressed(url, "carol@example.com") is False
    browser.find_element(By.ID, "confirm-all").click()
    browser.find_element(By.ID, "unsubscribe-all").click()
    wait(until.presence_of_element_located((By.ID, "flash")))
    assert "carol@example.com unsubscribed" in browser.find_element(By.ID, "flash").text
    assert suppressed(url, "carol@example.com") is True


def suppressed(url: str, address: str) -> bool:
    async def read() -> bool:
        store = await Store.open(url)
        try:
            return bool(await store.suppressed_among([address]))
        finally:
            await store.close()

    return asyncio.run(read())
