"""The names of other users' and shared mailboxes (imap/acl.py): ``locate`` and
``client_name`` are inverses, and a namespace's own levels are no mailbox."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap.acl import client_name, locate

USER = "alice@example.test"
_part = st.text(alphabet=st.characters(blacklist_characters="/", min_codepoint=32), min_size=1)
mailbox_names = (
    st.lists(_part, min_size=1, max_size=4)
    .map("/".join)
    .filter(lambda name: name.split("/")[0].upper() != "INBOX")
)
owners = st.sampled_from(["bob@example.test", "carol@other.test", "#shared@example.test"])


@given(owners, mailbox_names)
def test_client_name_and_locate_are_inverses(owner, mailbox):
    name = client_name(owner, mailbox, USER)
    assert locate(name, USER) == (owner, mailbox)


@given(mailbox_names)
def test_a_name_outside_the_namespaces_is_the_users_own(mailbox):
    if mailbox.split("/")[0] in ("Other Users", "Shared"):
        return
    assert locate(mailbox, USER) == (USER, mailbox)


def test_namespace_levels_and_foreign_shared_owners_are_no_mailbox():
    for name in (
        "Other Users",
        "Other Users/bob@example.test",
        "Other Users/bob",
        "Other Users/#shared@example.test/Support",
        "Shared",
        "Shared/INBOX",
    ):
        assert locate(name, USER) is None, name
    assert locate("Other Users/Bob@Example.TEST/inbox", USER) == ("bob@example.test", "INBOX")
    assert locate("Shared/Support", "dave@other.test") == ("#shared@other.test", "Support")
