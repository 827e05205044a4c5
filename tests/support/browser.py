"""Driving Debian's Chromium, headless, through chromedriver (Selenium) for the webmail's
browser tests: starting it, waiting for what htmx swaps in, clicking through swaps, logging in
by keyboard, and the console errors of our own pages.

Importing this module skips the importing test module where Selenium is missing; the test
modules also skip themselves (``pytestmark = BROWSER_MARKS``) where Chromium or chromedriver
is (``.ci/run`` installs them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver"),
]

__all__ = ["BROWSER_MARKS", "By", "Keys", "chromium", "click", "log_in", "module_browser",
           "page_errors", "text_of", "wait", "web_base"]  # fmt: skip


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium that trusts the test server's self-signed certificate and keeps
    its console log."""
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--ignore-certificate-errors",
                     "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                     "--no-first-run", "--disable-background-networking"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", name="browser")
def module_browser() -> Iterator[Any]:
    """The ``browser`` fixture: one Chromium for the tests of a module, which imports this
    (with the server, ``shared_server`` of tests/e2e/conftest.py)."""
    with chromium() as driver:
        yield driver


def web_base(server: Any) -> str:
    """The webmail's address on a test server (``tests/support/server.py``'s process)."""
    return f"https://127.0.0.1:{server.ports['web']}"


def wait(condition: Callable[[], Any], timeout: float = 15, what: str = "") -> None:
    """Until ``condition()`` is true. An element it looks for that isn't there yet, or was
    swapped out while it looked (a page still loading, htmx at work), counts as not yet."""
    deadline = time.time() + timeout
    while True:
        try:
            if condition():
                return
        except (StaleElementReferenceException, NoSuchElementException):
            pass
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def text_of(driver: Any, element_id: str) -> str:
    """The text of an element htmx may be swapping out at this very moment, including what
    only screen readers get (visually hidden)."""
    try:
        return driver.find_element(By.ID, element_id).get_attribute("textContent")
    except (StaleElementReferenceException, NoSuchElementException):
        return ""
    except WebDriverException as e:  # the same race, as Chromium's inspector words it
        if "does not belong to the document" in str(e):
            return ""
        raise


def click(driver: Any, link_text: str, timeout: float = 15) -> None:
    """Click a link once it is there, retrying while htmx swaps the list it is in."""
    deadline = time.time() + timeout
    while True:
        try:
            driver.find_element(By.LINK_TEXT, link_text).click()
            return
        except WebDriverException as e:  # stale, not there yet, or swapped out mid-click
            swapped = isinstance(e, StaleElementReferenceException | NoSuchElementException)
            if not swapped and "does not belong to the document" not in str(e):
                raise
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def page_errors(driver: Any) -> list[str]:
    """Console errors of our own pages (the sandboxed message body may log refusals)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "/message/body" not in entry["message"]
    ]


def log_in(driver: Any, base: str, user: str, password: str) -> None:
    """Log ``user`` in by keyboard, unless the browser already is; another user is logged
    out first."""
    driver.get(base + "/mail")
    if driver.current_url.startswith(base + "/mail"):
        if user in driver.find_element(By.TAG_NAME, "header").text:
            return
        driver.find_element(By.XPATH, "//header//button[text()='Log out']").click()
        wait(lambda: driver.current_url.startswith(base + "/login"), what="the login page")
    if driver.current_url.startswith(base + "/login"):
        driver.find_element(By.ID, "username").send_keys(user)
        driver.find_element(By.ID, "password").send_keys(password + Keys.ENTER)
        wait(lambda: driver.current_url.startswith(base + "/mail"), what="the mail page")
