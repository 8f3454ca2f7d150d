"""The collector's live page in a real browser (headless Chromium from the system's packages,
driven by Selenium): events appear without a reload, a filter narrows the list and lands in
the URL, the Rejected tab shows reasons, and hostile event names stay text.

Skipped when /usr/bin/chromium, /usr/bin/chromedriver or selenium is missing (Debian:
`apt-get install -y chromium chromium-driver`; pip: `selenium`). Nothing is downloaded:
the driver path is always given, so Selenium Manager never runs.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from _collector_helpers import KEY

import analytics
from analytics.collector import Collector

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15  # seconds: the bound of every wait on the page
HOSTILE = "<img src=x onerror=alert(1)>"


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install -y {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


if (_reason := _missing()) is not None:
    pytest.skip(f"browser test skipped: {_reason}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# The rows of a list as the user sees them: one dict per <li>, from textContent.
ROWS_JS = """
return Array.from(document.querySelectorAll(arguments[0] + " > li")).map((li) => ({
  type: (li.querySelector(".type") || {}).textContent,
  name: (li.querySelector(".name") || {}).textContent,
  user: (li.querySelector(".user") || {}).textContent,
  reason: (li.querySelector(".reason") || {}).textContent,
}));
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1200,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER)
    drv = webdriver.Chrome(service=service, options=options)
    try:
        drv.set_page_load_timeout(WAIT)
        drv.set_script_timeout(WAIT)
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(db=str(tmp_path / "collector.db")).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(collector: Collector) -> Iterator[analytics.Client]:
    c = analytics.Client(KEY, host=collector.url, flush_interval=5, timeout=5)
    try:
        yield c
    finally:
        c.shutdown(timeout=2)


def wait_for(driver: WebDriver, what: str, condition: Any) -> Any:
    """`condition(driver)` once it is truthy; fails with `what` after WAIT seconds."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)


def rows(driver: WebDriver, list_id: str = "events") -> list[dict[str, str]]:
    result: list[dict[str, str]] = driver.execute_script(ROWS_JS, f"#{list_id}")
    return result


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('{element_id}').textContent"))


def open_page(driver: WebDriver, url: str) -> None:
    """Load the page, wait until its script has polled once, and mark the document (the
    mark survives only if nothing reloads the page)."""
    driver.get(url)
    wait_for(driver, "the first poll", lambda d: "live" in d.find_element(By.ID, "status").text)
    driver.execute_script("window.__sameDocument = true")


def same_document(driver: WebDriver) -> bool:
    return driver.execute_script("return window.__sameDocument === true") is True


def csp_violations(driver: WebDriver) -> list[str]:
    """Browser console errors: a CSP violation or a failed script would show here."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018
    except NoAlertPresentException:
        return True
    return False


def post_raw_batch(url: str, batch: list[Any]) -> dict[str, Any]:
    """POST a batch straight to the collector (no library checks), past any proxy."""
    token = base64.b64encode(f"{KEY}:".encode()).decode()
    request = urllib.request.Request(
        url + "/v1/batch",
        data=json.dumps({"batch": batch}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as resp:
        answer: dict[str, Any] = json.load(resp)
        return answer


def test_events_appear_live_and_a_filter_updates_the_list_and_url(
    driver: WebDriver, collector: Collector, client: analytics.Client, tmp_path: Path
) -> None:
    open_page(driver, collector.url + "/")
    assert rows(driver) == [] and text(driver, "count-accepted") == "0"

    client.track("ada", "Signed Up", {"plan": "pro"})
    client.track("ada", "Plan Chosen", {"plan": "pro"})
    client.track("bob", "Signed Up", {"plan": "free"})
    assert client.flush(timeout=5)

    wait_for(driver, "three rows", lambda d: len(rows(d)) == 3)
    assert [(r["type"], r["name"], r["user"]) for r in rows(driver)] == [
        ("track", "Signed Up", "bob"),  # newest first
        ("track", "Plan Chosen", "ada"),
        ("track", "Signed Up", "ada"),
    ]
    wait_for(driver, "counts", lambda d: text(d, "count-accepted") == "3")
    assert text(driver, "count-distinct-users") == "2"
    assert text(driver, "count-requests") == "1"
    wait_for(driver, "the chart's bars", lambda d: d.find_elements(By.CSS_SELECTOR, "#chart rect"))
    assert same_document(driver)

    first = driver.find_element(By.CSS_SELECTOR, "#events > li summary")
    first.click()  # expand to the full JSON
    pre = driver.find_element(By.CSS_SELECTOR, "#events > li details[open] pre")
    assert json.loads(pre.text)["properties"] == {"plan": "free"}

    box = driver.find_element(By.CSS_SELECTOR, "#filters input[name=event]")
    box.send_keys("Signed Up")
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(driver, "the filtered list", lambda d: len(rows(d)) == 2)
    assert {r["name"] for r in rows(driver)} == {"Signed Up"}
    assert parse_qs(urlsplit(driver.current_url).query) == {"event": ["Signed Up"]}
    assert same_document(driver)  # replaceState, no navigation

    driver.get(driver.current_url)  # the shared URL shows the same view
    wait_for(driver, "the shared view", lambda d: len(rows(d)) == 2)
    assert {r["name"] for r in rows(driver)} == {"Signed Up"}
    box = driver.find_element(By.CSS_SELECTOR, "#filters input[name=event]")
    assert box.get_attribute("value") == "Signed Up"
    driver.save_screenshot(str(tmp_path / "collector-page.png"))
    assert (tmp_path / "collector-page.png").stat().st_size > 0
    assert csp_violations(driver) == []


def test_rejected_tab_shows_the_reason(driver: WebDriver, collector: Collector) -> None:
    open_page(driver, collector.url + "/")
    answer = post_raw_batch(collector.url, [{"type": "track", "userId": "ada"}])
    assert answer["accepted"] == 0 and len(answer["rejected"]) == 1

    driver.find_element(By.ID, "tab-rejected").click()
    wait_for(driver, "the rejected row", lambda d: len(rows(d, "rejected")) == 1)
    assert rows(driver, "rejected")[0]["reason"] == "track needs event (a non-empty string)"
    assert driver.find_element(By.ID, "panel-rejected").is_displayed()
    assert not driver.find_element(By.ID, "panel-events").is_displayed()
    assert parse_qs(urlsplit(driver.current_url).query) == {"tab": ["rejected"]}
    wait_for(driver, "the rejected count", lambda d: text(d, "badge-rejected") == "1")
    assert text(driver, "count-rejected") == "1" and same_document(driver)
    assert csp_violations(driver) == []


def test_a_hostile_event_name_is_shown_as_text(
    driver: WebDriver, collector: Collector, client: analytics.Client, tmp_path: Path
) -> None:
    open_page(driver, collector.url + "/")
    client.track("mallory", HOSTILE, {"html": "</pre><img src=x onerror=alert(2)>"})
    assert client.flush(timeout=5)

    wait_for(driver, "the hostile row", lambda d: len(rows(d)) == 1)
    assert rows(driver)[0]["name"] == HOSTILE  # literally, as text
    driver.find_element(By.CSS_SELECTOR, "#events > li summary").click()
    pre = driver.find_element(By.CSS_SELECTOR, "#events > li details[open] pre")
    assert json.loads(pre.text)["properties"]["html"] == "</pre><img src=x onerror=alert(2)>"
    assert driver.find_elements(By.CSS_SELECTOR, "img") == []  # nothing injected
    assert no_alert(driver)

    # The server-rendered view of the same event, with the name echoed in the filter box.
    driver.get(collector.url + "/?event=" + quote(HOSTILE))
    wait_for(driver, "the rendered row", lambda d: len(rows(d)) == 1)
    assert rows(driver)[0]["name"] == HOSTILE
    box = driver.find_element(By.CSS_SELECTOR, "#filters input[name=event]")
    assert box.get_attribute("value") == HOSTILE
    assert driver.find_elements(By.CSS_SELECTOR, "img") == []
    assert driver.execute_script("return document.scripts.length") == 1
    assert no_alert(driver)
    assert csp_violations(driver) == []
    driver.save_screenshot(str(tmp_path / "collector-page-hostile.png"))


# Where each cell of the first row sits, and whether anything sticks out of the window.
LAYOUT_JS = """
const li = document.querySelector("#events > li");
const box = (sel) => {
  const r = li.querySelector(sel).getBoundingClientRect();
  return {left: r.left, right: r.right, width: r.width, top: r.top};
};
return {
  viewport: document.documentElement.clientWidth,
  scroll: document.documentElement.scrollWidth,
  user: box(".user"), at: box(".at"), type: box(".type"), name: box(".name"),
  userText: li.querySelector(".user").textContent,
  atText: li.querySelector(".at").textContent,
};
"""


def test_the_layout_holds_at_400_px_and_shows_the_event_time(
    driver: WebDriver, collector: Collector, client: analytics.Client
) -> None:
    client.track("user-at-400px", "Imported", timestamp="2025-06-01T10:00:00Z")
    assert client.flush(timeout=5)
    driver.set_window_size(400, 900)
    try:
        open_page(driver, collector.url + "/?chart=event")
        wait_for(driver, "the row", lambda d: rows(d))
        layout = driver.execute_script(LAYOUT_JS)
        assert layout["scroll"] <= layout["viewport"], layout  # no sideways scrolling
        for cell in ("user", "at", "type", "name"):
            box = layout[cell]
            inside = box["left"] >= 0 and box["right"] <= layout["viewport"]
            assert box["width"] > 0 and inside, (cell, layout)
        assert layout["userText"] == "user-at-400px"
        assert layout["atText"] == "2025-06-01 10:00:00"  # the event's own time, whole
        assert layout["user"]["width"] >= 100, layout  # room for a user id, not a sliver
        assert text(driver, "chart-title").startswith("Events by their own timestamp")
        wait_for(driver, "bars by event time", lambda d: d.execute_script(
            "return document.querySelectorAll('#chart .bar').length") == 1)  # fmt: skip
        assert csp_violations(driver) == []
    finally:
        driver.set_window_size(1200, 900)
