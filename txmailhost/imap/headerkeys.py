"""What SORT and THREAD need from a message's header, derived once and kept.

Why: SORT (SUBJECT) on a 100,000-message mailbox must not decode 100,000 Subject fields each
time a client asks. The values (sent date, base subject, first From/To/Cc mailbox, display
names, Message-ID and References) are computed from the header block the index caches, stored
with ``IMailbox.remember`` under ``KEY`` (so they survive restarts and are dropped with the
message at expunge), and held in memory by the session while its mailbox stays selected.
A message's header never changes under its UID, so a value, once derived, is never stale.

The rules are RFC 5256's (§2.2 sent date, §3 SORT keys) and RFC 5957's (DISPLAYFROM/DISPLAYTO):
- the sent date is the Date field in UTC; when it is missing or unparseable, INTERNALDATE;
- FROM/TO/CC compare the addr-mailbox (local part) of the first address; a group's name counts
  as the first address's mailbox, as in the ENVELOPE;
- DISPLAYFROM/DISPLAYTO compare the decoded display name of the first address, or its
  addr-mailbox@addr-host when it has none;
- strings compare with i;ascii-casemap (upper-cased), the RFC's default collation;
- a Subject or display name counts by its first ``FIELD_OCTETS`` (8 KB) after unfolding, so
  what a message's keys cost is bounded, whatever its header (see ``header_text``).
"""

from __future__ import annotations

import email.header
import email.utils
import json
import re
import sys
from typing import Any, NamedTuple

from twisted.logger import Logger

from txmailhost import sentdates
from txmailhost.encodedwords import decode_words
from txmailhost.imap import mime
from txmailhost.imap.basesubject import base_subject, collapse_whitespace
from txmailhost.store.interfaces import StoredMessage

log = Logger(namespace="txmailhost.imap")

# IMailbox.remember name; the suffix changes if the derivation does. (Cutting fields to
# FIELD_OCTETS left it: that changed only keys of fields over 8 KB, no real mail's; keys kept
# before are still a total order, and a new suffix would re-derive every folder once. So did
# reading encoded words as mail readers do (``encodedwords.py``): it changed the keys of
# messages whose words had failed to decode, and those kept before keep their raw text.)
KEY = "imap.sortkeys.1"
# Real subjects and names, even with list tags and a dozen "Re:", stay under 1 KB; 8 KB keeps
# every one whole (RFC 5322 §2.1.1 wants lines under 998 octets), and some 900 characters
# even of Q-encoded CJK (nine octets a character). The stdlib's RFC 2047 decoder takes time
# quadratic in the encoded-words (28,000 of them: 1.2 s), so the cut is made before decoding.
FIELD_OCTETS = 8192
HEADER_BATCH = 1000
_MSG_ID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_THREAD_FIELDS = frozenset((b"message-id", b"references", b"in-reply-to"))
# "Name <local@host>", "\"Name\" <local@host>" or "local@host", then the end or a comma
_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:(?:"(?P<quoted>[^"\\]*)"|(?P<name>[^"<>,;:@()\\]*?))\s*'
    r"<(?P<local>[^<>@\s,;:\"()\\\[\]]+)@(?P<host>[^<>@\s,;:\"()\\\[\]]+)>"
    r"|(?P<bare_local>[^<>@\s,;:\"()\\\[\]]+)@(?P<bare_host>[^<>@\s,;:\"()\\\[\]]+))"
    r"\s*(?:,|$)"
)
_GROUP = re.compile(r'\s*((?:"[^"]*"|[^:<>@,"])+?)\s*:')


class HeaderKeys(NamedTuple):
    """The header-derived sort and thread values of one message."""

    sent: float | None  # Date field as POSIX time; None: use INTERNALDATE
    subject: str  # base subject, upper-cased
    reply: bool  # the base subject extraction removed Re:/Fwd:/(fwd)
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: str
    references: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps(list(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> HeaderKeys | None:
        try:
            values = json.loads(raw)
            keys = cls(*values)
        except (ValueError, TypeError):
            return None
        return keys._replace(references=tuple(keys.references))


def header_text(value: bytes) -> str:
    """An unfolded header value with RFC 2047 encoded-words decoded, whitespace collapsed: of
    its first ``FIELD_OCTETS``. Values that agree that far compare equal, and SORT keeps such
    messages in mailbox order (RFC 5256 §3: as any that match exactly), so its order stays
    total; a character or an encoded-word cut there is kept as it decodes."""
    text = decode_words(value[:FIELD_OCTETS].decode("utf-8", "replace"))
    return collapse_whitespace(text).strip()


def _first_address(value: bytes | None) -> tuple[str, str, str]:
    """(display name, mailbox, host) of the first address of an address field, as the
    ENVELOPE gives it: a group's first entry is its name (RFC 3501 §7.4.2)."""
    if value is None:
        return "", "", ""
    raw = value.decode("utf-8", "replace")
    group = _GROUP.match(raw)
    if group is not None:
        return "", group[1].strip('"'), ""
    simple = _SIMPLE_ADDRESS.match(raw)
    if simple is not None:  # the common forms, without the stdlib's character-by-character parser
        name = simple["quoted"] if simple["quoted"] is not None else (simple["name"] or "")
        name = name.strip()
        mailbox = simple["local"] or simple["bare_local"]
        host = simple["host"] or simple["bare_host"]
        return header_text(name.encode()) if name else "", mailbox, host
    try:
        pairs = email.utils.getaddresses([raw])
    except (RecursionError, ValueError):
        return "", "", ""
    for name, address in pairs:
        if not name and not address:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        return header_text(name.encode()) if name else "", mailbox, host
    return "", "", ""


def _display(address: tuple[str, str, str]) -> str:
    name, mailbox, host = address
    if name:
        return name.upper()
    return (f"{mailbox}@{host}" if host else mailbox).upper()


def _message_ids(value: bytes | None) -> list[str]:
    if value is None:
        return []
    return _MSG_ID.findall(value.decode("utf-8", "replace"))


def _sent(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = sentdates.parse(value.decode("ascii", "replace"))
        return float(email.utils.mktime_tz(parsed)) if parsed else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def derive(header: bytes) -> HeaderKeys:
    """The keys of one message from its header block."""
    fields: dict[bytes, bytes] = {}
    for name, value in mime.parse_header_fields(header):
        fields.setdefault(name, value)  # the first occurrence, as ENVELOPE takes it
    subject, reply = base_subject(header_text(fields.get(b"subject", b"")))
    sender, recipient = _first_address(fields.get(b"from")), _first_address(fields.get(b"to"))
    message_id, references = _thread_ids(fields)
    return _compact(
        [
            _sent(fields.get(b"date")),
            subject.upper(),
            reply,
            sender[1].upper(),
            recipient[1].upper(),
            _first_address(fields.get(b"cc"))[1].upper(),
            _display(sender),
            _display(recipient),
            message_id,
            references,
        ]
    )


def thread_root(header: bytes) -> str:
    """The id a message's thread is named after (RFC 5256 §3, REFERENCES): the first of its
    References, else of In-Reply-To, else its own Message-ID; "" when it has none. The same
    as ``derive`` finds, without decoding the Subject and the addresses: FETCH THREADID and
    SEARCH THREADID ask for it of every message every time."""
    fields: dict[bytes, bytes] = {}
    for name, value in mime.parse_header_fields(header):
        if name in _THREAD_FIELDS:
            fields.setdefault(name, value)
    message_id, references = _thread_ids(fields)
    return references[0] if references else message_id


def _thread_ids(fields: dict[bytes, bytes]) -> tuple[str, list[str]]:
    """(Message-ID, References) of a message's first fields by lower-case name."""
    ids = _message_ids(fields.get(b"message-id"))
    references = _message_ids(fields.get(b"references"))
    if not references:
        # RFC 5256 §3 (REFERENCES, step 1.A): without References, the first In-Reply-To id
        references = _message_ids(fields.get(b"in-reply-to"))[:1]
    return ids[0] if ids else "", references


def decode_many(stored: dict[int, bytes]) -> dict[int, HeaderKeys]:
    """``HeaderKeys.decode`` of many values in one JSON parse (a 100,000-message mailbox's
    keys decode in a fraction of the time one ``json.loads`` each takes); a value that does
    not decode is left out, to be derived again."""
    uids = list(stored)
    try:
        rows = json.loads(b"[" + b",".join(stored[uid] for uid in uids) + b"]")
    except ValueError:
        rows = None
    if rows is None or len(rows) != len(uids):
        decoded = ((uid, HeaderKeys.decode(stored[uid])) for uid in uids)
        return {uid: keys for uid, keys in decoded if keys is not None}
    out = {}
    for uid, row in zip(uids, rows, strict=True):
        if isinstance(row, list) and len(row) == len(HeaderKeys._fields):
            out[uid] = _compact(row)
    return out


def sent_dates(stored: dict[int, bytes]) -> dict[int, float | None]:
    """The sent date alone of each stored value (``HeaderKeys.encode``'s first element), read
    without decoding the rest: SORT (DATE), the sort webmails ask for most, needs nothing
    else, and decoding all ten keys was four fifths of its time (28 of 35 ms for 10,000
    messages). A value that doesn't read is left out, to be loaded whole."""
    out: dict[int, float | None] = {}
    for uid, value in stored.items():
        end = value.find(b",")
        if end < 2 or value[:1] != b"[":
            continue
        first = value[1:end]
        if first == b"null":
            out[uid] = None
            continue
        try:
            out[uid] = float(first)
        except ValueError:
            continue
    return out


async def load_sent(
    view: Any,
    cache: dict[int, HeaderKeys],
    sent_cache: dict[int, float | None],
    messages: list[StoredMessage],
) -> dict[int, float | None]:
    """The sent date of ``messages`` (None: use INTERNALDATE), as ``load`` would give it, from
    the session's keys, its sent dates (``sent_cache``, filled here), or the store's derived
    values read for the date alone; what is still missing is loaded whole (``load``)."""
    found: dict[int, float | None] = {}
    missing = []
    for message in messages:
        uid = message.uid
        keys = cache.get(uid)
        if keys is not None:
            found[uid] = keys.sent
        elif uid in sent_cache:
            found[uid] = sent_cache[uid]
        else:
            missing.append(uid)
    if missing:
        fresh = sent_dates(await view.mailbox.derived(missing, KEY))
        found.update(fresh)
        sent_cache.update(fresh)
        rest = {uid for uid in missing if uid not in fresh}
        if rest:
            whole = await load(view, cache, [m for m in messages if m.uid in rest])
            found.update((uid, keys.sent) for uid, keys in whole.items())
    return found


def _compact(row: list[Any]) -> HeaderKeys:
    """A decoded row as ``HeaderKeys``, its repetitive strings shared: in most mailboxes the
    To, the display names and the subjects of a thread recur, and interning them keeps a
    session's keys of 100,000 messages in a fraction of the memory."""
    sent, subject, reply, sender, recipient, cc, display_from, display_to, msgid, refs = row
    return _new_keys(
        HeaderKeys,
        (
            sent,
            _intern(subject),
            reply,
            _intern(sender),
            _intern(recipient),
            _intern(cc),
            _intern(display_from),
            _intern(display_to),
            msgid,
            tuple(refs),
        ),
    )


def _intern(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


_new_keys = tuple.__new__


async def load(
    view: Any, cache: dict[int, HeaderKeys], messages: list[StoredMessage]
) -> dict[int, HeaderKeys]:
    """The keys of ``messages`` of the selected mailbox ``view``: from ``cache`` (the
    session's, for this selection of the mailbox), else from the store's derived values, else
    derived from the cached header blocks (and remembered). ``cache`` is filled as a side
    effect.

    Why the cache is the session's and not the process's: nothing in the store interface tells
    a mailbox apart from one deleted and created again under the same name, and UIDVALIDITY
    alone does not (the index takes it from the clock, in seconds).
    """
    found: dict[int, HeaderKeys] = {}
    missing = []
    for message in messages:
        keys = cache.get(message.uid)
        if keys is not None:
            found[message.uid] = keys
        else:
            missing.append(message.uid)
    if missing:
        for uid, keys in decode_many(await view.mailbox.derived(missing, KEY)).items():
            found[uid] = cache[uid] = keys
        missing = [uid for uid in missing if uid not in found]
    for start in range(0, len(missing), HEADER_BATCH):
        batch = missing[start : start + HEADER_BATCH]
        fresh = {
            message.uid: derive(message.header or b"")
            for message in await view.mailbox.messages(batch, True, False)
        }
        found.update(fresh)
        cache.update(fresh)
        if fresh:
            try:
                await view.mailbox.remember(KEY, {uid: k.encode() for uid, k in fresh.items()})
            except Exception:  # a cache: failing to fill it costs a later re-derivation
                log.failure("imap could not keep sort keys")
    return found
