"""A test here whose fixtures ask for ``backend`` runs over each store (tests/support/backends.py);
``names`` is the mail-authentication tests' twisted.names server on loopback (the clients'
reverse DNS)."""

from tests.mailauth.conftest import names
from tests.support.backends import pytest_configure, pytest_generate_tests

__all__ = ["names", "pytest_configure", "pytest_generate_tests"]
