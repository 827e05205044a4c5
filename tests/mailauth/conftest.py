"""Fixtures for the mail-authentication tests: a twisted.names server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.names import NamesServer
from txmailhost.mailauth.resolver import MailAuthResolver


@pytest.fixture
def names(tmp_path) -> Iterator[NamesServer]:
    server = NamesServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def resolver(names: NamesServer) -> MailAuthResolver:
    return MailAuthResolver([names.address], timeout=2.0)
