"""Sort keys for sorting a folder by sender or subject, derived once per message.

A key is the first From: mailbox's display name (else its address) and the subject without
``Re:``/``Fwd:``, both case-folded (close to IMAP SORT's FROM and SUBJECT, RFC 5256 §2.1),
from the first ``headerbounds.MAX_LISTED`` characters of each field (what a list row shows;
the decoders are quadratic in what they are given, and list rows are decoded on the reactor).
Messages never change, so a key is derived once from the header block, kept with the message
in the store (``IMailbox.remember``, name :data:`SORT_KEYS`: the next process finds it in the
index and reads no message), and cached in memory per (user, folder, UIDVALIDITY) with a
bound on the entries held, least recently used folders going first.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from txmailhost.encodedwords import decode_words
from txmailhost.web.headerbounds import ELLIPSIS, MAX_LISTED

SORT_KEYS = "web.sortkeys.v1"  # the derived value's name: b"sender\0subject", folded
MAX_ENTRIES = 400_000  # about 40 MB of keys at most, whatever the folders
_BATCH = 500  # header blocks read at once when deriving


def decode_header(value: bytes | str | None) -> str:
    """An RFC 2047 header value as text; undecodable bytes become U+FFFD, never an error."""
    if value is None:
        return ""
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    raw = " ".join(raw.split())  # unfold
    if len(raw) <= MAX_LISTED:
        return _decoded(raw)
    start = raw[:MAX_LISTED]
    return _decoded(start.rpartition(" ")[0] or start) + ELLIPSIS  # whole words only


def _decoded(raw: str) -> str:
    return decode_words(raw)


def sender_name(value: bytes | None) -> str:
    """The display name, else the address, of the first From: mailbox."""
    text = decode_header(value)
    try:
        name, address = email.utils.parseaddr(text)
    except RecursionError:  # comments nested deeper than the stack
        return text
    return name or address or text


def header_fields(block: bytes | None) -> dict[str, bytes]:
    """The first value of each field of a header block, by lower-case name, unfolded."""
    fields: dict[str, bytes] = {}
    for line in re.split(rb"\r?\n(?![ \t])", block or b""):
        name, colon, value = line.partition(b":")
        if colon:
            key = name.strip().decode("ascii", "replace").lower()
            fields.setdefault(key, re.sub(rb"\r?\n", b"", value).strip())
    return fields


def sort_key(header: bytes | None) -> bytes:
    """What SORT_KEYS keeps for one message: b"sender\\0subject", case-folded."""
    fields = header_fields(header)
    subject = decode_header(fields.get("subject")).strip()
    while subject[:3].lower() in ("re:", "fw:") or subject[:4].lower() == "fwd:":
        subject = subject.partition(":")[2].strip()
    sender = sender_name(fields.get("from"))
    return (sender.casefold() + "\0" + subject.casefold()).encode("utf-8")


class SortKeys:
    """The in-memory cache in front of the store's derived values."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._folders: OrderedDict[tuple[str, str, int], dict[int, bytes]] = OrderedDict()
        self._entries = 0

    async def of(
        self,
        mailbox: Any,
        uidvalidity: int,
        uids: Sequence[int],
        in_thread: Callable[..., Any],
    ) -> dict[int, bytes]:
        """uid -> key for ``uids`` of ``mailbox`` (each derived once, ever)."""
        where = (mailbox.user, mailbox.name, uidvalidity)
        known = self._folders.pop(where, None) or {}
        self._entries -= len(known)
        if len(known) > 2 * len(uids):  # many expunged since: keep only the living
            known = {uid: known[uid] for uid in uids if uid in known}
        missing = [uid for uid in uids if uid not in known]
        if missing:
            known.update(await mailbox.derived(missing, SORT_KEYS))
            missing = [uid for uid in missing if uid not in known]
        for start in range(0, len(missing), _BATCH):
            batch = await mailbox.messages(missing[start : start + _BATCH], True, False)
            new = await in_thread(lambda batch=batch: {m.uid: sort_key(m.header) for m in batch})
            await mailbox.remember(SORT_KEYS, new)
            known.update(new)
        self._folders[where] = known
        self._entries += len(known)
        while self._entries > self.max_entries and len(self._folders) > 1:
            _, dropped = self._folders.popitem(last=False)
            self._entries -= len(dropped)
        return known


class SortedOrders:
    """Sorted UID lists of folders, so paging through a big folder sorts it once.

    Keyed by (user, folder, UIDVALIDITY, UIDNEXT, message count, sort, direction): with UIDNEXT
    fixed a folder's UIDs only ever shrink, so the count names the set exactly, and new mail or
    an expunge makes a new key (flags don't change these orders). Bounded by the UIDs held;
    least recently used orders go first.
    """

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._orders: OrderedDict[tuple, tuple[list[Any], int]] = OrderedDict()
        self._entries = 0

    def get(self, key: tuple) -> list[Any] | None:
        held = self._orders.get(key)
        if held is None:
            return None
        self._orders.move_to_end(key)
        return held[0]

    def put(self, key: tuple, order: list[Any], size: int | None = None) -> None:
        """Keep ``order``, counted as ``size`` UIDs (default: its length; a list of threads
        holds more UIDs than it has items)."""
        if key in self._orders:
            self._entries -= self._orders.pop(key)[1]
        size = len(order) if size is None else size
        self._orders[key] = (order, size)
        self._entries += size
        while self._entries > self.max_entries and len(self._orders) > 1:
            _, (_, dropped) = self._orders.popitem(last=False)
            self._entries -= dropped
