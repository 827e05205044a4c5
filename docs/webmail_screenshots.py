"""Make the screenshots of docs/webmail.rst: a real server with a few messages, headless
Chromium (Debian's chromium and chromium-driver, Selenium from the test extra).

    .venv/bin/python docs/webmail_screenshots.py     # writes docs/images/webmail-*.png
"""

from __future__ import annotations

import os
import shutil
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from tests.support.server import ServerProcess  # noqa: E402

OUT = os.path.join(ROOT, "docs", "images")
USER, PASSWORD = "alice@example.test", "river-maple-7-lantern"
MESSAGES = [
    ("Bob Martin <bob@example.org>", "Lunch on Friday?", "Shall we try the new place?", None),
    ("Carol <carol@example.net>", "Quarterly report", "Attached, as promised.", "report.pdf"),
    ("News <news@shop.example>", "Our autumn collection",
     "Plain version", '<h2>Autumn</h2><p>New colours are in.</p>'
     '<img src="https://tracker.example/pixel.gif" width=1 height=1>'
     '<p><a href="https://shop.example/">Visit the shop</a></p>'),
    ("Dave <dave@example.com>", "Re: the garden", "The roses are back.", None),
]  # fmt: skip
REPLIES = [
    ("Alice <alice@example.test>", "Re: Lunch on Friday?", "Yes! One o'clock?", None),
    ("Bob Martin <bob@example.org>", "Re: Lunch on Friday?", "One it is.", None),
]


def message(sender: str, subject: str, text: str, extra: str | None) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, USER, subject
    if subject == "Lunch on Friday?":
        m["Message-ID"] = "<lunch@example.org>"
    m.set_content(text)
    if extra and extra.endswith(".pdf"):
        m.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=extra)
    elif extra:
        m.add_alternative(extra, subtype="html")
    return m


def main() -> None:
    data = os.path.join(tempfile.mkdtemp(), "data")
    server = ServerProcess(data).start()
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--ignore-certificate-errors",
                     "--disable-gpu", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(shutil.which("chromedriver"))
    )
    try:
        server.add_user(USER, PASSWORD)
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
            for sender, subject, text, extra in MESSAGES:
                smtp.send_message(message(sender, subject, text, extra), to_addrs=[USER])
        base = f"https://127.0.0.1:{server.ports['web']}"
        driver.set_window_size(1100, 640)
        driver.get(base + "/login")
        driver.save_screenshot(os.path.join(OUT, "webmail-login.png"))
        driver.find_element(By.ID, "username").send_keys(USER)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form button").click()
        time.sleep(1.5)
        driver.save_screenshot(os.path.join(OUT, "webmail-inbox.png"))
        driver.find_element(By.LINK_TEXT, "Our autumn collection").click()
        time.sleep(1)
        driver.save_screenshot(os.path.join(OUT, "webmail-message.png"))
        driver.set_window_size(390, 780)
        driver.get(base + "/mail")
        time.sleep(1)
        driver.save_screenshot(os.path.join(OUT, "webmail-phone.png"))
        # after the others, so they show the inbox as above: a conversation, then threads
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
            for sender, subject, text, _extra in REPLIES:
                reply = message(sender, subject, text, None)
                reply["In-Reply-To"] = reply["References"] = "<lunch@example.org>"
                smtp.send_message(reply, to_addrs=[USER])
        driver.set_window_size(1100, 640)
        driver.get(base + "/mail?view=threads")
        time.sleep(1)
        driver.find_element(By.LINK_TEXT, "Lunch on Friday?").click()
        time.sleep(1)
        driver.save_screenshot(os.path.join(OUT, "webmail-threads.png"))
        server.cli("user", "admin", USER, "on")
        driver.set_window_size(1100, 1130)
        driver.get(base + "/admin/health")
        time.sleep(1)
        driver.save_screenshot(os.path.join(OUT, "webmail-admin-health.png"))
    finally:
        driver.quit()
        server.stop()
        shutil.rmtree(os.path.dirname(data), ignore_errors=True)


if __name__ == "__main__":
    main()
