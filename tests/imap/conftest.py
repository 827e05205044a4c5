"""Every test here whose fixtures build a store runs over each backend (tests/support/backends.py)."""

from tests.support.backends import pytest_configure, pytest_generate_tests

__all__ = ["pytest_configure", "pytest_generate_tests"]
