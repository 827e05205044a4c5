"""Greylisting in the real server: a real client's first attempt gets 451 4.7.1, its retry
after the delay is delivered. (Loopback is exempt by default; this server exempts nothing.)"""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.e2e.conftest import start_from_template

CONFIG = """
[filters.settings.greylist]
exempt_networks = []
delay = 1
"""


@pytest.fixture
def greylisting(server_template, tmp_path):
    proc = start_from_template(server_template, str(tmp_path / "data"), CONFIG)
    yield proc
    proc.stop()


def test_first_attempt_is_greylisted_and_the_retry_is_accepted(greylisting):
    message = "From: x@remote.test\r\nSubject: greylist-me\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", greylisting.ports["smtp"], timeout=30) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            s.sendmail("x@remote.test", ["alice@example.test"], message)
        code, text = refused.value.recipients["alice@example.test"]
        assert code == 451 and text.startswith(b"4.7.1 greylisted")
    time.sleep(1.2)
    with smtplib.SMTP("127.0.0.1", greylisting.ports["smtp"], timeout=30) as s:
        assert s.sendmail("x@remote.test", ["alice@example.test"], message) == {}
