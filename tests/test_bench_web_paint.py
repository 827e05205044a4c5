"""The webmail paint bench's fixture and its leak detector (bench/web_paint.py).

Not timings: that the 1 MiB newsletter it opens is what the bench says (an HTML part of the
asked size, as the webmail reads it, with remote images, CSS fetches and a tracking pixel for
the sanitiser to remove), and that the loopback listener its remote URLs name counts a fetch,
so "no connection" means something.
"""

from __future__ import annotations

import socket
import time

from bench.web_paint import ConnectionCounter, html_message, newsletter
from txmailhost.web.messageview import read_message
from txmailhost.web.sanitize import sanitize

TRACKER = "https://127.0.0.1:9999"


def test_newsletter_is_as_big_as_asked_and_full_of_remote_fetches() -> None:
    html = newsletter(64 * 1024, TRACKER)
    assert 64 * 1024 <= len(html) < 66 * 1024
    images = html.count("<img ")
    assert images > 40
    assert html.count(TRACKER) > images // 2  # pixel, style sheet, @import, background
    assert "shop.example/p/" in html


def test_the_webmail_reads_it_as_html_and_blocks_every_remote_image() -> None:
    raw = html_message(64 * 1024, TRACKER, "Spring sale")
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP line ends only
    view = read_message(raw)
    assert view.subject == "Spring sale" and view.html is not None
    assert len(view.html) >= 64 * 1024
    cleaned = sanitize(view.html)
    assert cleaned.blocked_images == view.html.count("<img ")
    assert "127.0.0.1:9999" not in cleaned.html and " src=" not in cleaned.html
    assert 'href="https://shop.example/p/' in cleaned.html  # links stay


def test_connection_counter_counts_a_connection() -> None:
    counter = ConnectionCounter()
    try:
        assert counter.accepted == 0
        socket.create_connection(("127.0.0.1", counter.port), timeout=5).close()
        deadline = time.monotonic() + 5
        while counter.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counter.accepted == 1
    finally:
        counter.close()
