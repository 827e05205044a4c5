"""SEARCH narrowed by the Maildir full-text index gives exactly what reading every message
gives (imap/matching.py + store/textindex.py), on mail with encoded headers, base64 and
quoted-printable bodies, other charsets, HTML and attachments."""

from __future__ import annotations

import base64
import quopri

import pytest
from twisted.internet.defer import Deferred

from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.imap.matching import matching
from txmailhost.imap.parser import Reader
from txmailhost.imap.search import Candidate, html_text, parse_search
from txmailhost.imap.searchtext import SEARCH_TEXT
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import MessageSource, TextTerm
from txmailhost.store.maildir import MaildirStore

USER = "alice@example.test"


def _b64(text: str, charset: str = "utf-8") -> str:
    return base64.encodebytes(text.encode(charset)).decode("ascii").replace("\n", "\r\n")


def _qp(text: str, charset: str) -> str:
    return quopri.encodestring(text.encode(charset)).decode("ascii").replace("\n", "\r\n")


CORPUS = [
    # plain ASCII
    "From: Alice Example <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch plans\r\n"
    "\r\nShall we meet at the Zebracorn cafe on Friday?\r\n",
    # RFC 2047 subject and display name, base64 UTF-8 body
    "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\nTo: alice@example.org\r\n"
    "Cc: Team <team@example.org>\r\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + _b64("Die Straße nach München ist lang. Ünïcödé everywhere.\n"),
    # quoted-printable ISO-8859-1
    "From: pierre@example.fr\r\nTo: alice@example.org\r\nBcc: hidden@example.org\r\n"
    "Subject: Caf\xe9?\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable"
    "\r\n\r\n" + _qp("Un café crème à Besançon, s'il vous plaît.\n", "iso-8859-1"),
    # 8bit ISO-8859-1 with no transfer encoding
    "From: marta@example.es\r\nTo: alice@example.org\r\nSubject: latin\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Ma\xf1ana vamos a la monta\xf1a.\r\n",
    # multipart/alternative: plain + QP HTML, and a base64 attachment
    "From: News <news@lists.example.com>\r\nTo: alice@example.org\r\nSubject: Weekly digest\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n\r\nThis week: gardening tips.\r\n"
    "--inner\r\nContent-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    + _qp(
        "<html><body><p>This week: <b>garden</b>ing&nbsp;tips &amp; "
        "<i>tomato</i>\nseeds</p><script>hiddenscript()</script></body></html>\n",
        "utf-8",
    )
    + "\r\n--inner--\r\n--outer\r\nContent-Type: application/pdf; name=report.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + _b64("%PDF-1.4 binary secretpdfword\n")
    + "--outer--\r\n",
    # an HTML-only message, 7bit
    "From: shop@store.example\r\nTo: alice@example.org\r\nSubject: Your ORDER\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
    "<div>Order <span>number</span> 12345 has <em>shipped</em></div>\r\n",
    # an attached message
    "From: fwd@example.org\r\nTo: alice@example.org\r\nSubject: Fwd: old\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    "see below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
    "From: deep@example.org\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n" + _b64("nested treasure map\n") + "--b--\r\n",
    # upper case and an odd address form
    'From: "Big, Corp" <SALES@BIGCORP.EXAMPLE>\r\nTo: undisclosed-recipients:;\r\n'
    'Subject: "QUOTED" words AND operators\r\n\r\nBUY NOW! Limited OFFER near(x) {col} : *\r\n',
    # 8bit KOI8-R without a Content-Transfer-Encoding field
    b"From: ivan@example.ru\r\nSubject: privet\r\nContent-Type: text/plain; charset=koi8-r\r\n"
    b"\r\n" + "Привет, мир!".encode("koi8-r") + b"\r\n",
]

QUERIES = [
    "TEXT zebracorn",
    "TEXT ZEBRACORN",
    "BODY zebracorn",
    "TEXT corn",
    "TEXT co",
    "TEXT a",
    "TEXT straße",
    "TEXT STRASSE",
    "TEXT münchen",
    "BODY ünïcödé",
    "TEXT café",
    "BODY crème",
    "TEXT besançon",
    "TEXT mañana",
    "TEXT montaña",
    'TEXT "gardening tips"',
    'BODY "gardening tips & tomato seeds"',
    "TEXT tomato",
    "TEXT hiddenscript",
    "TEXT secretpdfword",
    "TEXT " + _b64("%PDF-1.4 binary")[:12],
    "TEXT report.pdf",
    'TEXT "order number 12345 has shipped"',
    "TEXT treasure",
    "BODY treasure",
    'TEXT "near(x) {col} : *"',
    'TEXT "\\"quoted\\""',
    "SUBJECT grüße",
    "SUBJECT lunch",
    "SUBJECT order",
    "SUBJECT café",
    "FROM müller",
    "FROM juergen@example.de",
    "FROM example",
    "FROM sales@bigcorp",
    'FROM "big, corp"',
    "FROM @lists.example.com",
    "TO alice@example.org",
    "TO undisclosed",
    "CC team@",
    "BCC hidden",
    "HEADER FROM pierre",
    "HEADER SUBJECT weekly",
    "HEADER X-Missing anything",
    "OR TEXT tomato FROM pierre",
    "OR TEXT tomato TEXT a",
    "NOT TEXT tomato",
    "TEXT example SUBJECT digest",
    "(FROM example.org TEXT see) UNSEEN",
    "UID 1:3 TEXT alice",
    "SEEN TEXT alice",
    "TEXT nothingmatchesthis",
    "TEXT привет",
    "BODY МИР",
]


@pytest.fixture
def view(tmp_path):
    store = MaildirStore(str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    store.provision_sync(USER)
    mailbox = result(store.open(USER, "INBOX"))
    for text in CORPUS:
        if isinstance(text, bytes):
            raw = text
        else:
            raw = text.encode("latin-1") if "\xe9" in text or "\xf1" in text else text.encode()
        seen = ["\\Seen"] if b"ORDER" in raw else []
        result(mailbox.append(MessageSource.from_bytes(raw), seen))
    return _view(mailbox)


def _view(mailbox) -> SelectedMailbox:
    selection = result(mailbox.select(False))
    return SelectedMailbox(
        mailbox, mailbox.name, True, selection.uids, selection.uidvalidity, selection.uidnext,
        selection.highestmodseq, [(selection.first_recent, selection.uidnext)],
    )  # fmt: skip


def _search(view: SelectedMailbox, query: str) -> list[int]:
    def resolve(text: bytes, by_uid: bool) -> set[int]:
        return {seq for seq, _uid in view.resolve(text, by_uid)}

    program = parse_search(Reader(query.encode()), resolve)
    found = result(Deferred.fromCoroutine(matching(view, program)))
    return [seq for seq, _message in found]


def _scan(view: SelectedMailbox, query: str) -> list[int]:
    """The same criteria tested on every message, no index involved."""

    def resolve(text: bytes, by_uid: bool) -> set[int]:
        return {seq for seq, _uid in view.resolve(text, by_uid)}

    program = parse_search(Reader(query.encode()), resolve)
    messages = result(view.mailbox.messages(list(view.uids), True, True))
    return [
        seq
        for seq, message in enumerate(messages, 1)
        if program.predicate(Candidate(seq, message, view.is_recent(message.uid)))
    ]


@pytest.mark.parametrize("query", QUERIES)
def test_indexed_search_answers_exactly_what_a_scan_does(view, query):
    assert _search(view, query) == _scan(view, query)


def test_the_index_answers_the_decoded_text_a_user_would_type(view):
    expected = {
        "TEXT straße": [2],
        "TEXT STRASSE": [2],  # case folding: ß folds to ss
        "TEXT besançon": [3],
        "TEXT mañana": [4],
        'BODY "gardening tips & tomato seeds"': [5],  # HTML reduced to text
        'TEXT "order number 12345 has shipped"': [6],
        "TEXT treasure": [7],  # base64 inside an attached message
        "SUBJECT grüße": [2],
        "FROM müller": [2],
        "BCC hidden": [3],
        "TEXT hiddenscript": [5],  # still in the raw HTML, as the scan sees it
        "BODY МИР": [9],  # KOI8-R, 8bit
        "TEXT " + _b64("%PDF-1.4 binary")[:12]: [],  # an attachment's base64 isn't text
        "TEXT report.pdf": [5],  # its file name is
    }
    assert {query: _search(view, query) for query in expected} == expected


def test_the_index_narrows_the_messages_read(view):
    uids = list(view.uids)
    narrowed = result(
        view.mailbox.text_candidates(TextTerm("text", "zebracorn"), uids, SEARCH_TEXT)
    )
    assert narrowed == {uids[0]}
    by_sender = result(view.mailbox.text_candidates(TextTerm("from", "pierre"), uids, SEARCH_TEXT))
    assert by_sender == {uids[2]}


def test_a_message_appended_after_the_first_search_is_found(view):
    assert _search(view, "TEXT zebracorn") == [1]
    mailbox = view.mailbox
    result(mailbox.append(MessageSource.from_bytes(b"Subject: again\r\n\r\nzebracorn two\r\n")))
    assert _search(_view(mailbox), "TEXT zebracorn") == [1, len(CORPUS) + 1]


def test_expunged_messages_are_not_found(view):
    assert _search(view, "TEXT example") == _scan(view, "TEXT example")
    mailbox = view.mailbox
    result(mailbox.expunge([view.uids[0]]))
    fresh = _view(mailbox)
    assert _search(fresh, "TEXT zebracorn") == []
    assert _search(fresh, "TEXT example") == _scan(fresh, "TEXT example")


def test_html_text_drops_markup_and_keeps_words():
    markup = "<p>Hel<b>lo</b>&nbsp;you\nthere</p><style>p{}</style><!-- x --><br>next"
    assert html_text(markup) == "Hello you there\nnext"
