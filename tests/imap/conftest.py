"""Every test here whose fixtures build a store runs over each backend (tests/support/backends.py).

``world`` is the mail world most tests here start from: alice and bob, each with an empty
INBOX. A module that needs more (messages, another user) defines its own ``world``, which
pytest prefers to this one.
"""

import pytest

from tests.imap.support import ALICE, BOB
from tests.support.backends import pytest_configure, pytest_generate_tests
from tests.support.fixtures import MailWorld, make_world

__all__ = ["pytest_configure", "pytest_generate_tests", "world"]


@pytest.fixture
def world(tmp_path, backend) -> MailWorld:
    w = make_world(tmp_path, backend)
    w.add_user(ALICE)
    w.add_user(BOB)
    return w
