"""Fixtures for the mail-authentication tests: a twisted.names server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.names import NamesServer
from txmailhost.mailauth.keys import KeyStore
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


@pytest.fixture
def evil(names: NamesServer, tmp_path) -> KeyStore:
    """DKIM keys of evil.test, published in the test DNS: a sender whose signatures verify."""
    keys = KeyStore(str(tmp_path / "dkim"))
    keys.create("evil.test", "k")
    for key in keys.published("evil.test"):
        names.add(f"{key.selector}._domainkey.evil.test", "TXT", key.txt_record())
    return keys
