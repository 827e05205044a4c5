"""``txmailhost acl ...`` in-process: what it says when there is nothing to change."""

from __future__ import annotations

from tests.test_cli import PASSWORD, Run, data, make_run, run  # noqa: F401 - fixtures

USER = "kim@example.org"


def test_deleting_an_entry_that_is_not_there_is_an_error(run: Run) -> None:  # noqa: F811
    """It printed "deleted nobody@example.org" with exit status 0."""
    assert run("domain", "add", "example.org").status == 0
    assert run("user", "add", USER, stdin=PASSWORD + "\n").status == 0
    missing = run("acl", "delete", USER, "INBOX", "nobody@example.org")
    assert (missing.status, missing.out, missing.err) == (
        1,
        "",
        f"txmailhost: error: INBOX of {USER} has no entry for nobody@example.org\n",
    )
    assert run("acl", "set", USER, "INBOX", "lee@example.org", "lr").status == 0
    deleted = run("acl", "delete", USER, "INBOX", "lee@example.org")
    assert (deleted.status, deleted.out) == (0, "deleted lee@example.org\n")
    assert run("acl", "list", USER, "INBOX").out.splitlines() == [f"{USER} lrswipkxtea"]
