"""A test here whose fixtures ask for ``backend`` runs over each store (tests/support/backends.py)."""

from tests.support.backends import pytest_configure, pytest_generate_tests

__all__ = ["pytest_configure", "pytest_generate_tests"]
