"""``python -m bench.corpus_interop``: real mail through txmailhost and Dovecot, answers compared.

Every message of the SpamAssassin public corpus (``bench.spam_corpus`` fetches it: 6,046
messages from 2002, with the malformed MIME, addresses and dates real mail has) is APPENDed
to a txmailhost and to a private Dovecot (``bench/anchors/dovecot.py``). Then both are asked
the same things:

- ``fetch``: BODYSTRUCTURE and ENVELOPE of every message;
- ``search``: a set of SEARCH keys (header, address, body, text, size, date), result sets;
- ``order``: SORT by each key (RFC 5256, DISPLAYFROM of RFC 5957) and THREAD by both
  algorithms, answers as sent;
- ``pop3``: LIST sizes, TOP n 3 and RETR of the first ``--pop3`` messages.

It prints, per item, how many answers differ, with the first few side by side, after
setting aside what RFC 3501 leaves to the server: case, the order of a body's parameters, a
language as a string or a list, white space in a string, a literal for a quoted string. What
differed when this was written (docs/benchmarks-interop.rst) is each a choice one of the two
made on purpose; a new difference is worth a look.

``--dir DIR`` (repeatable) compares every file under DIR instead: mail the team has not
seen, such as the malformed messages other projects test their parsers with.

Run by hand (needs Dovecot installed and root, as ``bench/`` does), never in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import imaplib
import poplib
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import spam_corpus, targets
from bench.anchors import dovecot
from bench.server import PASSWORD, Server
from bench.spam_eval import default_cache

USER = "corpus@bench.test"
SEARCHES = (
    'SUBJECT "free"', 'SUBJECT "ILUG"', 'FROM "yahoo.com"', 'TO "zzzz"', 'CC "linux.ie"',
    'HEADER "X-Mailer" "Outlook"', 'HEADER "Content-Type" "html"', 'HEADER "List-Id" ""',
    'BODY "unsubscribe"', 'BODY "click here"', 'BODY "=20"', 'BODY "bank account"',
    'TEXT "viagra"', 'TEXT "mortgage"', 'TEXT "spamassassin"', 'BODY "http://"',
    "LARGER 20000", "SMALLER 2000", "SENTBEFORE 1-Jan-2002", "SENTSINCE 1-Sep-2002",
    'SUBJECT "re:"', 'NOT BODY "the"', 'OR SUBJECT "money" BODY "money"',
)  # fmt: skip


def messages(cache: Path) -> list[bytes]:
    """The corpus's messages, line ends made CRLF (as IMAP APPEND wants them)."""
    data = spam_corpus.fetch(cache)
    found = []
    for group in spam_corpus.GROUPS:
        found += map(crlf, spam_corpus.load(data, group))
    return found


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def messages_in(folders: list[Path]) -> list[bytes]:
    """Every file under ``folders`` (sorted by path, empty ones and those with a NUL left
    out: IMAP APPEND takes neither), line ends made CRLF: other projects' test mail, say
    the malformed messages of Python's ``test_email`` or of a parser's test suite."""
    found = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            raw = path.read_bytes()
            if raw.strip() and b"\0" not in raw:
                found.append(crlf(raw))
    return found


def _filled(server: Server, corpus: list[bytes]) -> imaplib.IMAP4:
    server.add_user(USER)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(USER, PASSWORD)
    for raw in corpus:
        client.append("INBOX", None, None, raw)
    client.select("INBOX")
    return client


def _fetched(client: imaplib.IMAP4, count: int, items: str) -> dict[int, bytes]:
    """Each message's FETCH answer, literals inlined, by sequence number."""
    answers = {}
    for n in range(1, count + 1):
        typ, data = client.fetch(str(n), items)
        answers[n] = b"".join(p if isinstance(p, bytes) else p[0] + p[1] for p in data)
    return answers


def _searched(client: imaplib.IMAP4) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for key in SEARCHES:
        try:
            typ, data = client.search(None, key)
            answers[key] = set(data[0].split()) if typ == "OK" else (typ, data)
        except imaplib.IMAP4.error as e:
            answers[key] = ("error", str(e))
    return answers


ORDERINGS = (
    "SORT (ARRIVAL) UTF-8 ALL", "SORT (DATE) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 ALL", "SORT (FROM) UTF-8 ALL", "SORT (TO) UTF-8 ALL",
    "SORT (CC) UTF-8 ALL", "SORT (SIZE) UTF-8 ALL", "SORT (DISPLAYFROM) UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL",
)  # fmt: skip


def _ordered(client: imaplib.IMAP4) -> dict[str, Any]:
    """Each of ``ORDERINGS``' answers (RFC 5256, 5957): the order, or the threads, as sent."""
    answers: dict[str, Any] = {}
    for command in ORDERINGS:
        name, _, arguments = command.partition(" ")
        try:
            typ, data = client._simple_command(name, arguments)
            typ, data = client._untagged_response(typ, data, name)
            answers[command] = b" ".join(d for d in data if d) if typ == "OK" else (typ, data)
        except imaplib.IMAP4.error as e:
            answers[command] = ("error", str(e))
    return answers


def _popped(server: Server, count: int) -> dict[int, tuple]:
    poplib._MAXLINE = 1 << 20  # the corpus has lines longer than poplib's 2,048
    client = poplib.POP3("127.0.0.1", server.pop3_port)
    client.user(USER)
    client.pass_(PASSWORD)
    sizes = dict(map(int, line.split()) for line in client.list()[1])
    answers = {}
    for n in range(1, min(count, len(sizes)) + 1):
        top, retr = client.top(n, 3)[1], client.retr(n)[1]
        answers[n] = (sizes[n], _digest(top), _digest(retr))
    client.quit()
    return answers


def _digest(lines: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:16]


def collect(server: Server, corpus: list[bytes], pop3: int) -> dict[str, Any]:
    client = _filled(server, corpus)
    found = {
        "fetch": _fetched(client, len(corpus), "(BODYSTRUCTURE ENVELOPE)"),
        "search": _searched(client),
        "order": _ordered(client),
    }
    client.logout()
    found["pop3"] = _popped(server, pop3) if pop3 else {}
    return found


_LITERAL = re.compile(rb"\{(\d+)\}(?:\r\n)?")  # imaplib drops the CRLF
_PARAMS = re.compile(rb'\(((?:"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" ?)+)\)')


def comparable(answer: bytes) -> bytes:
    """A FETCH answer with what RFC 3501 leaves to the server set aside."""
    out, position = b"", 0
    for match in _LITERAL.finditer(answer):  # a literal as the quoted string it could be
        if match.start() < position:
            continue
        size = int(match.group(1))
        body = answer[match.end() : match.end() + size]
        out += answer[position : match.start()] + b'"' + body.replace(b'"', b'\\"') + b'"'
        position = match.end() + size
    text = (out + answer[position:]).lower()

    def ordered(match: re.Match[bytes]) -> bytes:
        items = re.findall(rb'"(?:[^"\\]|\\.)*"', match.group(1))
        pairs = sorted(zip(items[::2], items[1::2], strict=False))
        return b"(" + b" ".join(b" ".join(p) for p in pairs) + b")"

    text = _PARAMS.sub(ordered, text)
    text = re.sub(rb'\(("[a-z-]+")\)', rb"\1", text)
    return re.sub(rb"[ \t]+", b" ", text)


def report(ours: dict[str, Any], theirs: dict[str, Any], shown: int, out: Callable = print):
    fetch_differs = [
        n for n in ours["fetch"] if comparable(ours["fetch"][n]) != comparable(theirs["fetch"][n])
    ]
    out(f"fetch: {len(fetch_differs)} of {len(ours['fetch'])} answers differ")
    for n in fetch_differs[:shown]:
        out(f"  ours    {ours['fetch'][n][:600]!r}\n  Dovecot {theirs['fetch'][n][:600]!r}")
    out("search: key, ours, Dovecot, only ours, only Dovecot")
    for key in SEARCHES:
        mine, its = ours["search"][key], theirs["search"][key]
        if isinstance(mine, set) and isinstance(its, set):
            out(f"  {key:40} {len(mine):5} {len(its):5} {len(mine - its):5} {len(its - mine):5}")
        else:
            out(f"  {key:40} ours {mine!r:.80} Dovecot {its!r:.80}")
    out("sort and thread: command, the first place the answers differ (none: the same)")
    for command in ORDERINGS:
        mine, its = ours["order"][command], theirs["order"][command]
        if mine == its:
            out(f"  {command:40} the same")
        elif isinstance(mine, bytes) and isinstance(its, bytes):
            at = next((i for i, (a, b) in enumerate(zip(mine, its, strict=False)) if a != b), 0)
            out(f"  {command:40} at octet {at}: ours {mine[max(0, at - 40) : at + 80]!r}")
            out(f"  {'':40} {'':>{len(str(at)) + 10}} Dovecot {its[max(0, at - 40) : at + 80]!r}")
        else:
            out(f"  {command:40} ours {mine!r:.80} Dovecot {its!r:.80}")
    pop_differs = [n for n in ours["pop3"] if ours["pop3"][n] != theirs["pop3"].get(n)]
    out(f"pop3: {len(pop_differs)} of {len(ours['pop3'])} messages differ (LIST, TOP 3, RETR)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus_interop", description=__doc__)
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--limit", type=int, default=0, help="only the first N messages")
    parser.add_argument("--pop3", type=int, default=1500, help="messages compared over POP3")
    parser.add_argument("--show", type=int, default=5, help="differing answers shown")
    parser.add_argument(
        "--dir",
        type=Path,
        action="append",
        default=[],
        help="compare the messages in this folder (every file) instead of the corpus",
    )
    args = parser.parse_args(argv)
    if (why := dovecot.unavailable()) is not None:
        print(f"Dovecot unavailable: {why}", file=sys.stderr)
        return 1
    corpus = messages_in(args.dir) if args.dir else messages(args.cache)
    if args.limit:
        corpus = corpus[: args.limit]
    with targets.running(Path(tempfile.mkdtemp()), mailauth=False) as server:
        ours = collect(server, corpus, args.pop3)
    work = Path(tempfile.mkdtemp())
    work.chmod(0o755)  # Dovecot's processes run as its own users
    with dovecot.running(work) as server:
        theirs = collect(server, corpus, args.pop3)
    print(f"{len(corpus)} messages")
    report(ours, theirs, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
