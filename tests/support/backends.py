"""Running protocol tests over every store backend.

A ``conftest.py`` that imports ``pytest_configure`` and ``pytest_generate_tests`` from here
gives its tests a ``backend`` fixture ("maildir", "memory", ...: the names ``[store] backend``
takes), so each test that builds a store through it runs once per backend. Backends that need
a database server (``NEEDS_SERVER``: "postgres") are left out here unless
``TXMAILHOST_TEST_POSTGRES=1``; the store contract suite always runs them against the server it
starts (tests/support/postgres.py). A test about what only some backends do (files on disk)
says so with ``@pytest.mark.backends("maildir")``.
"""

from __future__ import annotations

import os
from typing import Any

from txmailhost.store.backends import BACKENDS, NEEDS_SERVER

# TXMAILHOST_TEST_POSTGRES=1 runs them over "postgres" too, on the server the tests start;
# TXMAILHOST_TEST_S3=1 besides keeps that store's bodies in moto's S3 server (tests/support/s3.py).
_DEFAULT = tuple(
    n for n in BACKENDS if n not in NEEDS_SERVER or os.environ.get("TXMAILHOST_TEST_POSTGRES")
)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only over these store backends (default: all)"
    )


def pytest_generate_tests(metafunc: Any) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker is not None else _DEFAULT
        metafunc.parametrize("backend", names)
