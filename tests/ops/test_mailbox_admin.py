"""``txmailhost mailbox ...`` in-process: what bad names do to a user's mailboxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import PASSWORD, Run, data, make_run, run  # noqa: F401 - fixtures

USER = "kim@example.org"


@pytest.fixture
def user_run(run: Run) -> Run:  # noqa: F811 - the fixture
    assert run("domain", "add", "example.org").status == 0
    assert run("user", "add", USER, stdin=PASSWORD + "\n").status == 0
    return run


def mailboxes(run: Run) -> list[str]:  # noqa: F811
    return run("mailbox", "list", USER).out.splitlines()


@pytest.mark.parametrize("name", ["x\ny", "x\ty", "x\ry"])
def test_a_name_with_a_line_break_or_tab_is_refused_not_made_as_another(
    user_run: Run,
    data: Path,  # noqa: F811 - the fixture
    name: str,
) -> None:
    """Twisted's imap4-utf-7 encoder wrote these as "&-", which read back as "x&y": the
    command printed "created x" / "y" and made the folder ``.x&-y``."""
    before = mailboxes(user_run)
    result = user_run("mailbox", "create", USER, name)
    assert result.status == 1
    assert result.err == (
        f"txmailhost: error: invalid mailbox name {ascii(name)}: "
        "mailbox name contains control characters\n"
    )
    assert mailboxes(user_run) == before
    assert not list((data / "mail" / "example.org" / "kim").glob(".x*"))


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["Good", "Also", "bad\ny"], "mailbox name contains control characters"),
        (["Good", "Bad*"], "mailbox names can't contain * or %"),
        (["Good", "Sent"], "mailbox 'Sent' exists"),
        (["Good", "Good"], "mailbox 'Good' is named twice"),
    ],
)
def test_every_name_is_checked_before_any_is_made(
    user_run: Run, names: list[str], error: str
) -> None:
    before = mailboxes(user_run)
    result = user_run("mailbox", "create", USER, *names)
    assert result.status == 1 and error in result.err, result.err
    assert mailboxes(user_run) == before


def test_good_names_are_made_and_subscribed(user_run: Run) -> None:
    result = user_run("mailbox", "create", USER, "Lists", "Lists/twisted")
    assert (result.status, result.out) == (0, "created Lists\ncreated Lists/twisted\n")
    listed = user_run("mailbox", "list", USER, "--subscribed").out.splitlines()
    assert {"Lists", "Lists/twisted"} <= set(listed)
