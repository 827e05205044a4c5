"""Running protocol tests over every store backend.

A ``conftest.py`` that imports ``pytest_configure`` and ``pytest_generate_tests`` from here
gives its tests a ``backend`` fixture ("maildir", "memory", ...: the names ``[store] backend``
takes), so each test that builds a store through it runs once per backend. A test about what
only some backends do (files on disk) says so with ``@pytest.mark.backends("maildir")``.
"""

from __future__ import annotations

from typing import Any

from txmailhost.store.backends import BACKENDS


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only over these store backends (default: all)"
    )


def pytest_generate_tests(metafunc: Any) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker is not None else tuple(BACKENDS)
        metafunc.parametrize("backend", names)
