"""Fixtures for the spam tests: the mail-authentication tests' twisted.names server on
loopback and a resolver asking it (DNS lists, reverse DNS, HELO names)."""

from tests.mailauth.conftest import names, resolver  # noqa: F401 (fixtures, by name)
