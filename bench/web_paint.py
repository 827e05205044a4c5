"""Webmail in Chromium: the message list's first paint, and opening a 1 MiB HTML message.

The measures of issue 18 that only a browser gives, against the real server (``twistd
txmailhost``) over HTTPS on loopback, with the INBOX ``bench.web_latency`` fills
(``--messages`` messages) and Debian's Chromium, headless, driven by Selenium through
chromedriver:

- the message list (``GET /mail?sort=date``, the whole page, first page) loaded ``--loads``
  times: the browser's navigation timing (first byte, DOMContentLoaded, load) and its paint
  timing (first paint, first contentful paint), each from the navigation's start;
- a newsletter-like HTML message of ``--html-kib`` KiB (nested tables, inline styles, a link
  and a remote image per item, a tracking pixel, remote CSS) delivered over SMTP, then:
  the server time of its reading page and of the sanitised body the page's iframe loads,
  ``--requests`` each on a kept-alive connection; and the same page in Chromium: when the
  iframe's document arrived and when its content was first painted;
- that opening it made no request beyond the webmail: Chromium's network log (every frame)
  names no other origin, and a listener on loopback that every remote image of the message
  points at (half of them; the others name hosts Chromium is told not to resolve) accepted no
  connection.

    python -m bench.web_paint [--messages 100000 --loads 30 --requests 50 --html-kib 1024]
"""

from __future__ import annotations

import argparse
import email.policy
import json
import os
import re
import shutil
import smtplib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from bench.stats import percentile
from bench.web_latency import PASSWORD, USER, WORDS, Client, populate, serving

# Navigation and paint timing of the document, in ms from its navigation's start; null until
# its load event has ended and its first contentful paint is reported. Polled from Python: in
# the sandboxed iframe (no allow-scripts) the page's timers never fire.
_TIMING = """
const nav = performance.getEntriesByType('navigation')[0];
const paint = Object.fromEntries(
  performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
if (!nav || !nav.loadEventEnd || !('first-contentful-paint' in paint)) return null;
return {origin: performance.timeOrigin, requestStart: nav.requestStart,
        responseStart: nav.responseStart,
        dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
        fp: paint['first-paint'], fcp: paint['first-contentful-paint'],
        frames: performance.getEntriesByType('resource')
          .filter(e => e.initiatorType === 'iframe')
          .map(e => ({start: e.startTime, requestStart: e.requestStart,
                      responseStart: e.responseStart, responseEnd: e.responseEnd})),
        resources: performance.getEntriesByType('resource').map(e => e.name)};
"""


def timing(driver: Any, timeout: float = 60) -> dict[str, Any]:
    """``_TIMING`` of the current document (or frame), once it is there."""
    deadline = time.monotonic() + timeout
    while (found := driver.execute_script(_TIMING)) is None:
        assert time.monotonic() < deadline, "no load event or first contentful paint"
        time.sleep(0.02)
    return found


class ConnectionCounter:
    """A TCP listener on loopback that accepts, counts and closes: any fetch of a URL naming
    it (http or https, whatever the path) shows up here."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone doesn't
        self.sock.close()


def newsletter(size: int, tracker: str) -> str:
    """A marketing mail's HTML of about ``size`` characters: a table layout with inline
    styles, per item a product image (remote), a heading, text and two links; a remote style
    sheet, an ``@import``, CSS background images and a tracking pixel, all of which must not
    load. Half the remote URLs name ``tracker`` (a loopback listener that counts), half hosts
    under ``.example``."""
    words = WORDS + ["offer", "season", "free", "shipping", "members", "limited", "today"]
    head = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Spring sale</title>'
        f'<link rel="stylesheet" href="{tracker}/news.css">'
        f"<style>@import url({tracker}/import.css); body{{margin:0}} .btn{{color:#fff}}</style>"
        '</head><body style="margin:0;padding:0;background-color:#f2f2f2">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'bgcolor="#f2f2f2"><tr><td align="center">'
        '<table width="600" cellpadding="0" cellspacing="0" border="0" '
        'style="background-color:#ffffff;border-collapse:collapse;max-width:600px">'
        f'<tr><td style="padding:20px;background-image:url({tracker}/hero.jpg)">'
        '<h1 style="font-family:Arial,sans-serif;font-size:28px;color:#222222;margin:0">'
        "Spring sale: up to 40% off</h1></td></tr>"
    )
    items = []
    length, n = len(head), 0
    while length < size:
        text = " ".join(words[(n * 7 + k * 3) % len(words)] for k in range(60))
        image = f"{tracker}/p/{n}.jpg" if n % 2 else f"https://img{n % 5}.shop.example/p/{n}.jpg"
        link = f"https://shop.example/p/{n}?utm_source=mail&amp;utm_campaign=spring&amp;u=8812"
        item = (
            '<tr><td style="padding:12px 20px;border-bottom:1px solid #e5e5e5">'
            '<table width="100%" cellpadding="0" cellspacing="0" border="0"><tr>'
            f'<td width="140" valign="top"><a href="{link}"><img src="{image}" width="120" '
            f'height="90" alt="Product {n}" style="display:block;border:0"></a></td>'
            '<td valign="top" style="font-family:Arial,sans-serif;font-size:14px;'
            'line-height:20px;color:#444444">'
            f'<h3 style="margin:0 0 6px 0;font-size:16px;color:#111111">Item {n}: '
            f"{words[n % len(words)]} {words[(n + 3) % len(words)]}</h3>"
            f'<p style="margin:0 0 8px 0">{text}</p>'
            f'<font color="#888888" size="2">Was ${n % 90 + 10}.99, now ${n % 60 + 5}.49</font> '
            f'<a href="{link}&amp;cta=1" style="background-color:#0a7d4f;color:#ffffff;'
            'padding:6px 12px;text-decoration:none;border-radius:4px;display:inline-block">'
            "Shop now</a></td></tr></table></td></tr>"
        )
        items.append(item)
        length += len(item)
        n += 1
    tail = (
        '<tr><td style="padding:20px;font-size:11px;color:#999999">You get this because you '
        'signed up. <a href="https://shop.example/unsubscribe?u=8812">Unsubscribe</a></td>'
        f'</tr></table><img src="{tracker}/open?u=8812" width="1" height="1" alt="">'
        "</td></tr></table></body></html>"
    )
    return head + "".join(items) + tail


def html_message(size: int, tracker: str, subject: str) -> bytes:
    """multipart/alternative: a short text part and the newsletter, quoted-printable."""
    message = EmailMessage()
    message["From"] = "Shop <news@shop.example>"
    message["To"] = USER
    message["Subject"] = subject
    message["Message-ID"] = "<spring-sale@shop.example>"
    message.set_content("Spring sale: up to 40% off. View this mail in HTML.\n")
    message.add_alternative(newsletter(size, tracker), subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=email.policy.SMTP)


def find_uid(client: Client, subject: str) -> int:
    """The UID of the message with ``subject``, from the first page of the list by date."""
    status, page = client.request("GET", "/mail?sort=date")
    assert status == 200, status
    at = page.index(subject.encode())
    return int(re.findall(rb"uid=(\d+)", page[:at])[-1])


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium that accepts the server's self-signed certificate, keeps its network
    log, and resolves no host name: nothing it tries can leave the machine."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--ignore-certificate-errors",
                     "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = webdriver.ChromeService(shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def browser_login(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    deadline = time.monotonic() + 60
    while not driver.current_url.startswith(base + "/mail"):
        assert time.monotonic() < deadline, driver.current_url
        time.sleep(0.05)


def requested_urls(driver: Any) -> list[str]:
    """Every URL Chromium sent a request for (any frame) since the log was last read."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def show(label: str, values: list[float], unit: str = "ms") -> None:
    print(f"  {label:44s} p50 {percentile(values, 50):8.1f}  p99 {percentile(values, 99):8.1f}"
          f"  max {max(values):8.1f} {unit}")  # fmt: skip


def list_in_browser(driver: Any, base: str, loads: int) -> None:
    url = base + "/mail?sort=date"
    rows: list[dict[str, float]] = []
    for _ in range(loads + 1):
        driver.get(url)
        row = timing(driver)
        row["wait"] = row["responseStart"] - row["requestStart"]
        rows.append(row)
    first, rows = rows[0], rows[1:]
    print(f"message list in Chromium (/mail?sort=date, whole page), {loads} loads (ms from "
          f"navigation start); the first load: FCP {first['fcp']:.1f}, load {first['load']:.1f}")  # fmt: skip
    for key, label in [("wait", "request sent to first byte"),
                       ("responseStart", "first byte (responseStart)"),
                       ("fp", "first paint"), ("fcp", "first contentful paint"),
                       ("dcl", "DOMContentLoaded end"), ("load", "load event end")]:  # fmt: skip
        show(label, [row[key] for row in rows])


def message_in_browser(driver: Any, base: str, uid: int, loads: int) -> list[str]:
    """Loads the message page ``loads`` times; returns the URLs requested that are not the
    webmail's."""
    from selenium.webdriver.common.by import By

    url = f"{base}/message?folder=INBOX&uid={uid}"
    requested_urls(driver)  # what came before
    rows = []
    for _ in range(loads):
        driver.get(url)
        page = timing(driver)
        [frame_entry] = page["frames"]
        driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe.body"))
        try:
            frame = timing(driver)
        finally:
            driver.switch_to.default_content()
        shift = frame["origin"] - page["origin"]  # the frame's clock to the page's
        rows.append({
            "wait": page["responseStart"] - page["requestStart"],
            "responseStart": page["responseStart"],
            "frame_wait": frame_entry["responseStart"] - frame_entry["requestStart"],
            "fcp": page["fcp"],
            "frame_bytes": frame_entry["responseEnd"],
            "frame_fcp": frame["fcp"] + shift,
            "load": page["load"],
            "others": [u for u in page["resources"] + frame["resources"]
                       if not u.startswith(base)],
        })  # fmt: skip
    print(f"1 MiB HTML message in Chromium (/message, its sandboxed iframe), {loads} loads "
          f"(ms from the page's navigation start):")  # fmt: skip
    for key, label in [("wait", "page: request sent to first byte"),
                       ("responseStart", "page: first byte"),
                       ("fcp", "page: first contentful paint"),
                       ("frame_wait", "iframe: request sent to first byte"),
                       ("frame_bytes", "iframe document received (responseEnd)"),
                       ("frame_fcp", "iframe: first contentful paint"),
                       ("load", "page load event end (iframe loaded)")]:  # fmt: skip
        show(label, [row[key] for row in rows])
    others = [u for row in rows for u in row["others"]]
    network = [u for u in requested_urls(driver) if not u.startswith((base, "data:"))]
    return others + network


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=30, help="page loads in Chromium")
    parser.add_argument("--requests", type=int, default=50, help="HTTP requests per page")
    parser.add_argument("--html-kib", type=int, default=1024)
    args = parser.parse_args(argv)
    counter = ConnectionCounter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        populate(data, args.messages)
        print(f"populated {args.messages} messages in {time.perf_counter() - started:.1f}s")
        try:
            # no content filters: the spam filter could file the newsletter in Junk
            with serving(data, "[filters]\nchain = []\n") as (_server, ports):
                report(ports, counter, args)
        finally:
            counter.close()
    return 0


def report(ports: dict[str, int], counter: ConnectionCounter, args: argparse.Namespace) -> None:
    base = f"https://127.0.0.1:{ports['web']}"
    client = Client(ports["web"])
    client.login()
    print(f"first /mail (indexes the new files): {client.timed('/mail?sort=date'):.2f}s")
    with chromium() as driver:
        browser_login(driver, base)
        list_in_browser(driver, base, args.loads)

        subject = "Spring sale: up to 40% off"
        raw = html_message(args.html_kib * 1024, f"https://127.0.0.1:{counter.port}", subject)
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=120) as smtp:
            smtp.sendmail("news@shop.example", [USER], raw)
        print(f"delivered the HTML message ({len(raw)} bytes on the wire, HTML part "
              f"{args.html_kib} KiB) in {time.perf_counter() - started:.2f}s")  # fmt: skip
        uid = find_uid(client, subject)
        page, body = f"/message?folder=INBOX&uid={uid}", f"/message/body?folder=INBOX&uid={uid}"
        status, cleaned = client.request("GET", body)
        assert status == 200, status
        print(
            f"sanitised body: {len(cleaned)} bytes; src= left: {cleaned.count(b' src=')}, "
            f"URLs of the image listener left: {cleaned.count(str(counter.port).encode())}"
        )
        print(f"server time, {args.requests} requests each (ms):")
        for label, path in [("message page (/message)", page), ("sanitised body (/message/body)", body)]:  # fmt: skip
            first = client.timed(path) * 1000
            times = [client.timed(path) * 1000 for _ in range(args.requests)]
            show(f"{label}, first {first:.1f}", times)
        others = message_in_browser(driver, base, uid, args.loads)
    print(f"requests beyond the webmail: {len(others)} {sorted(set(others))[:5]}; "
          f"connections to the image listener: {counter.accepted}")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
