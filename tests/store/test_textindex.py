"""The Maildir folder's full-text index (store/textindex.py) through ``ITextIndex``: what it
indexes, what expunge, UIDVALIDITY, a new extractor version and damage do to it."""

from __future__ import annotations

import os

import pytest
from zope.interface.verify import verifyObject

from tests.store.conftest import USER
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import textindex
from txmailhost.store.interfaces import (
    ITextIndex,
    MessageSource,
    StoredMessage,
    TextAll,
    TextAny,
    TextTerm,
)
from txmailhost.store.maildir import MaildirStore


class Extractor:
    """A stand-in for IMAP's: the raw message, lower-cased, and the From line; counts calls."""

    def __init__(self, version: str = "test-1") -> None:
        self.version = version
        self.calls = 0

    def columns(self, message: StoredMessage) -> dict[str, str]:
        self.calls += 1
        text = (message.content or b"").decode("utf-8", "replace").casefold()
        head = (message.header or b"").decode("utf-8", "replace").casefold()
        sender = next((line for line in head.splitlines() if line.startswith("from:")), "")
        return {"text": text, "subject": "", "from": sender, "to": "", "cc": "", "bcc": ""}


def _append(mailbox, body: str, sender: str = "a@example.test") -> int:
    data = f"From: {sender}\r\nSubject: s\r\n\r\n{body}\r\n".encode()
    return result(mailbox.append(MessageSource.from_bytes(data)))[1]


@pytest.fixture
def inbox(store):
    return result(store.open(USER, "INBOX"))


@pytest.fixture
def filled(inbox):
    uids = [
        _append(inbox, "the zebracorn grazes", "zed@zoo.test"),
        _append(inbox, "a unicorn sleeps", "uni@zoo.test"),
        _append(inbox, "nothing to see", "bob@else.test"),
    ]
    return inbox, uids


def _ask(mailbox, query, uids, extractor=None):
    return result(mailbox.text_candidates(query, uids, extractor or Extractor()))


def test_the_maildir_mailbox_provides_itextindex(inbox):
    assert verifyObject(ITextIndex, inbox)


def test_a_substring_term_narrows_to_the_messages_holding_it(filled):
    inbox, (zebra, unicorn, nothing) = filled
    assert _ask(inbox, TextTerm("text", "corn"), [zebra, unicorn, nothing]) == {zebra, unicorn}
    assert _ask(inbox, TextTerm("text", "zebracorn"), [zebra, unicorn, nothing]) == {zebra}
    assert _ask(inbox, TextTerm("text", "giraffe"), [zebra, unicorn, nothing]) == set()


def test_a_field_term_looks_in_that_field_only(filled):
    inbox, (zebra, unicorn, nothing) = filled
    assert _ask(inbox, TextTerm("from", "zoo.test"), [zebra, unicorn, nothing]) == {zebra, unicorn}
    assert _ask(inbox, TextTerm("from", "grazes"), [zebra, unicorn, nothing]) == set()


def test_and_or_combine_and_a_short_needle_narrows_nothing(filled):
    inbox, (zebra, unicorn, nothing) = filled
    both = TextAll((TextTerm("text", "corn"), TextTerm("from", "uni@")))
    assert _ask(inbox, both, [zebra, unicorn, nothing]) == {unicorn}
    either = TextAny((TextTerm("text", "zebra"), TextTerm("text", "nothing")))
    assert _ask(inbox, either, [zebra, unicorn, nothing]) == {zebra, nothing}
    assert _ask(inbox, TextTerm("text", "co"), [zebra, unicorn, nothing]) is None
    with_short = TextAll((TextTerm("text", "co"), TextTerm("text", "sleeps")))
    assert _ask(inbox, with_short, [zebra, unicorn, nothing]) == {unicorn}
    assert (
        _ask(inbox, TextAny((TextTerm("text", "co"), TextTerm("text", "sleeps"))), [zebra]) is None
    )


def test_only_the_uids_asked_about_are_answered(filled):
    inbox, (zebra, unicorn, _nothing) = filled
    assert _ask(inbox, TextTerm("text", "corn"), [unicorn]) == {unicorn}


def test_needles_with_quotes_and_operators_are_searched_as_text(inbox):
    odd = _append(inbox, 'say "AND" OR NOT near(x) {col} : *')
    plain = _append(inbox, "plain words")
    for needle in ['"and"', "or not", "near(x)", "{col} : *", '""']:
        assert _ask(inbox, TextTerm("text", needle), [odd, plain]) in ({odd}, None), needle


def test_mail_is_indexed_once_at_the_first_search_not_at_delivery(filled, store):
    inbox, uids = filled
    directory = inbox.directory
    assert not os.path.exists(os.path.join(directory, textindex.TEXT_INDEX_NAME))
    extractor = Extractor()
    _ask(inbox, TextTerm("text", "corn"), uids, extractor)
    assert extractor.calls == 3
    _ask(inbox, TextTerm("text", "sleeps"), uids, extractor)
    assert extractor.calls == 3  # nothing new to index
    later = _append(inbox, "a late corn delivery")
    assert _ask(inbox, TextTerm("text", "corn"), [*uids, later], extractor) == {
        uids[0],
        uids[1],
        later,
    }
    assert extractor.calls == 4  # only the new message


def test_expunged_messages_leave_the_answers(filled):
    inbox, (zebra, unicorn, nothing) = filled
    _ask(inbox, TextTerm("text", "corn"), [zebra, unicorn, nothing])
    result(inbox.store_flags([zebra], ["\\Deleted"], "+"))
    assert result(inbox.expunge([zebra])) == [zebra]
    index = textindex.TextIndex(inbox.directory)
    assert index.candidates(TextTerm("text", "zebracorn")) is not None
    assert zebra not in index.indexed(*_meta(inbox))
    assert _ask(inbox, TextTerm("text", "corn"), [unicorn, nothing]) == {unicorn}


def _meta(inbox):
    return inbox._index.meta()["uidvalidity"], "test-1"


def test_many_dead_rows_make_the_next_search_rebuild_the_file(inbox, monkeypatch):
    monkeypatch.setattr(textindex, "MIN_DEAD_FOR_REBUILD", 1)
    uids = [_append(inbox, f"corn number {i}") for i in range(4)]
    extractor = Extractor()
    _ask(inbox, TextTerm("text", "corn"), uids, extractor)
    result(inbox.expunge(uids[:3]))
    size_before = textindex.TextIndex(inbox.directory).size()
    assert _ask(inbox, TextTerm("text", "corn"), uids[3:], extractor) == {uids[3]}
    assert extractor.calls == 5  # dead rows outnumbered live ones: indexed again from scratch
    assert textindex.TextIndex(inbox.directory).size() <= size_before


def test_a_new_extractor_version_rebuilds_the_index(filled):
    inbox, uids = filled
    _ask(inbox, TextTerm("text", "corn"), uids, Extractor("v1"))
    second = Extractor("v2")
    assert _ask(inbox, TextTerm("text", "corn"), uids, second) == {uids[0], uids[1]}
    assert second.calls == 3


def test_a_new_uidvalidity_drops_the_old_entries(filled, store):
    inbox, uids = filled
    _ask(inbox, TextTerm("text", "corn"), uids)
    # The folder's index is rebuilt from the files by another tool: new UIDVALIDITY, and UIDs
    # that may now name other messages.
    os.unlink(os.path.join(inbox.directory, "txmailhost-index.sqlite"))
    fresh = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    reopened = result(fresh.open(USER, "INBOX"))
    selection = result(reopened.select(False))
    extractor = Extractor()
    found = _ask(reopened, TextTerm("text", "unicorn"), list(selection.uids), extractor)
    assert extractor.calls == 3 and len(found) == 1


def test_a_damaged_file_is_dropped_and_the_caller_scans(filled):
    inbox, uids = filled
    _ask(inbox, TextTerm("text", "corn"), uids)
    textindex._close(textindex.TextIndex(inbox.directory).path)
    path = os.path.join(inbox.directory, textindex.TEXT_INDEX_NAME)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    with open(path, "r+b") as f:
        f.write(b"this is not a database" * 100)
    assert _ask(inbox, TextTerm("text", "corn"), uids) is None
    assert _ask(inbox, TextTerm("text", "corn"), uids) == {uids[0], uids[1]}


def test_rebuild_indexes_every_message_again(filled):
    inbox, uids = filled
    extractor = Extractor()
    assert result(inbox.rebuild_text_index(extractor)) == 3
    assert extractor.calls == 3
    assert result(inbox.rebuild_text_index(extractor)) == 3
    assert extractor.calls == 6


def test_with_the_index_off_nothing_is_narrowed_or_written(tmp_path):
    store = MaildirStore(str(tmp_path / "mail"), SyncReactor(), SyncThreadPool(), text_index=False)
    store.provision_sync(USER)
    inbox = result(store.open(USER, "INBOX"))
    uid = _append(inbox, "corn")
    assert _ask(inbox, TextTerm("text", "corn"), [uid]) is None
    assert result(inbox.rebuild_text_index(Extractor())) is None
    assert not os.path.exists(os.path.join(inbox.directory, textindex.TEXT_INDEX_NAME))


def test_deleting_a_folder_takes_its_text_index_with_it(store):
    result(store.create_mailbox(USER, "Lists"))
    lists = result(store.open(USER, "Lists"))
    uid = _append(lists, "corn")
    _ask(lists, TextTerm("text", "corn"), [uid])
    assert os.path.exists(os.path.join(lists.directory, textindex.TEXT_INDEX_NAME))
    result(store.delete_mailbox(USER, "Lists"))
    result(store.create_mailbox(USER, "Lists"))
    again = result(store.open(USER, "Lists"))
    other = _append(again, "wheat")
    assert _ask(again, TextTerm("text", "corn"), [other]) == set()


def test_trigrams_are_distinct_and_bounded():
    assert textindex.trigrams("ab") == []
    assert textindex.trigrams("aaaa") == ["aaa"]
    long = textindex.trigrams("abcdefghijklmnopqrstuvwxyz0123456789")
    assert len(long) == textindex.MAX_TRIGRAMS and long[0] == "abc" and long[-1] == "789"


def test_a_search_out_of_time_leaves_the_rest_to_the_caller_and_a_background_job(
    filled, monkeypatch
):
    inbox, (zebra, unicorn, nothing) = filled
    monkeypatch.setattr(textindex, "SEARCH_BUDGET", -1.0)  # no time to index anything
    extractor = Extractor()
    calls_in_search = []
    monkeypatch.setattr(
        inbox._store, "_backfill_text", lambda *args: calls_in_search.append(extractor.calls)
    )
    # Nothing indexed in time: every message is a candidate, for the caller to test.
    assert _ask(inbox, TextTerm("text", "zebracorn"), [zebra, unicorn, nothing], extractor) == {
        zebra,
        unicorn,
        nothing,
    }
    assert calls_in_search == [0]


def test_the_background_job_indexes_what_the_search_had_no_time_for(filled, monkeypatch):
    inbox, (zebra, unicorn, nothing) = filled
    monkeypatch.setattr(textindex, "SEARCH_BUDGET", -1.0)
    extractor = Extractor()
    # The synchronous pool runs the job before the search returns.
    _ask(inbox, TextTerm("text", "zebracorn"), [zebra, unicorn, nothing], extractor)
    assert extractor.calls == 3
    assert _ask(inbox, TextTerm("text", "zebracorn"), [zebra, unicorn, nothing], extractor) == {
        zebra
    }
    assert extractor.calls == 3


def test_expunge_succeeds_over_a_damaged_text_index(filled):
    inbox, uids = filled
    _ask(inbox, TextTerm("text", "corn"), uids)
    path = os.path.join(inbox.directory, textindex.TEXT_INDEX_NAME)
    textindex._close(path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    with open(path, "r+b") as f:
        f.write(b"this is not a database" * 100)
    assert result(inbox.expunge([uids[0]])) == [uids[0]]
    assert _ask(inbox, TextTerm("text", "corn"), uids[1:]) == {uids[1]}
