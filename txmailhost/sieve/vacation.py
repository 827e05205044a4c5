"""Vacation (RFC 5230, ``:seconds`` from RFC 6131): whether to answer, the answer, and the
record of whom was answered.

Whether (:func:`refusal`, RFC 5230 4.5-4.6 and RFC 3834 2): never to the null sender, never
to mail that is itself automatic (``Auto-Submitted`` other than ``no``), never to mailing lists
(any ``List-*`` field, ``Precedence: bulk/list/junk``) or list robots (``owner-*``,
``*-request``, ``MAILER-DAEMON``...), never to ourselves (the user's address or one of
``:addresses``), and only when one of those addresses is a recipient named in ``To``, ``Cc``,
``Bcc``, ``Resent-To``, ``Resent-Cc`` or ``Resent-Bcc`` (so a Bcc'd list copy gets no answer).

Once per sender per period (:class:`ResponseLog`): each user keeps
``DATA/sieve/DOMAIN/USER/vacation.json``, a map from a digest of (sender, handle) to the time
until which that sender is not answered again. The handle is ``:handle``, or by default the
reason, subject and ``:from`` together (RFC 5230 4.2): editing the message makes it new. The
record is written durably *before* the reply is handed over, so a crash between the two loses
one reply rather than sending two.
With ``[store] backend = "postgres"`` the record is the table ``sieve_responses`` instead, one
for every node (``sieve/shared.py``): otherwise each node would answer a sender once.

The reply (:func:`build_reply`, RFC 5230 5): to the envelope sender, from ``<>`` (RFC 3834
3.3), ``Auto-Submitted: auto-replied``, ``In-Reply-To`` and ``References`` naming the
original, ``Subject`` from ``:subject`` or ``Auto: `` and the original's; with ``:mime`` the
reason is a whole MIME entity. What comes from the original (its ids, its subject, and
whatever a variable took from it into ``:subject`` or ``:from``) goes through
``replyfields``: only real msg-ids, text on one line, so the sender of the original can't
write fields or a body into the reply sent as the user.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from email.utils import formatdate, make_msgid

from txmailhost._safeio import directory_locked, makedirs_durably, write_atomic
from txmailhost.replyfields import fold_ids, header_text, reply_ids
from txmailhost.sieve.interpreter import VacationRequest
from txmailhost.sieve.matching import DETAIL_SEPARATOR
from txmailhost.sieve.message import MessageView

LOG_NAME = "vacation.json"
MAX_LOG_ENTRIES = 10_000  # senders remembered per user; the oldest go first
MIN_SECONDS = 0  # RFC 6131 3: 0 means "answer every message" (the checks above still hold)
MAX_SECONDS = 365 * 86400
_LIST_FIELDS = (
    "List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner",
    "List-Archive",
)  # fmt: skip
_RECIPIENT_FIELDS = ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
_LINE_END = re.compile(r"\r\n|\r|\n")
_ROBOTS = ("mailer-daemon", "listserv", "majordomo", "postmaster", "noreply", "no-reply")


def refusal(message: MessageView, request: VacationRequest, own: list[str]) -> str | None:
    """Why no reply may be sent, or None when one may (RFC 5230 4.5, 4.6; RFC 3834 2)."""
    sender = (message.sender or "").lower()
    if not sender:
        return "the sender is <>"
    ours = {a.lower() for a in own} | {a.lower() for a in request.addresses}
    if sender in ours:
        return "the sender is the user"
    local = sender.rpartition("@")[0]
    if local in _ROBOTS or local.startswith("owner-") or local.endswith(("-request", "-owner")):
        return "the sender is a list or a robot"
    auto = message.values("Auto-Submitted")
    if any(v.split(";")[0].strip().lower() != "no" for v in auto):
        return "the message is auto-submitted"
    if any(message.exists(name) for name in _LIST_FIELDS):
        return "the message comes from a mailing list"
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in message.values("Precedence")):
        return "the message is bulk mail"
    named = {a.lower() for field in _RECIPIENT_FIELDS for a in message.addresses(field)}
    if not (named | {_without_detail(a) for a in named}) & ours:
        return "the user is not named as a recipient"
    return None


def _without_detail(address: str) -> str:
    """``alice+lists@x`` as ``alice@x``: mail to a user's plus-address names the user."""
    local, at, domain = address.rpartition("@")
    return local.partition(DETAIL_SEPARATOR)[0] + at + domain if at else address


def handle_of(request: VacationRequest) -> str:
    """RFC 5230 4.2: ``:handle``, or what makes two vacation actions the same."""
    if request.handle is not None:
        return "handle:" + request.handle
    return "\0".join(("auto", request.reason, request.subject or "", request.sender or ""))


def response_key(sender: str, handle: str) -> str:
    """What a reply to ``sender`` for ``handle`` is remembered as: a digest, so the record
    holds no address (the same in the file and in the shared table, sieve/shared.py)."""
    return hashlib.sha256(f"{sender.lower()}\0{handle}".encode()).hexdigest()[:32]


class ResponseLog:
    """Who was answered, per user, until when; blocking (the delivery thread calls it)."""

    def __init__(self, clock: object = time) -> None:
        self._clock = clock
        self._lock = threading.Lock()

    def claim(self, directory: str, sender: str, handle: str, seconds: int) -> bool:
        """True, and ``sender`` not answered again for ``seconds``, if no reply for
        ``handle`` went to ``sender`` within the period; False if one did."""
        now = self._clock.time()  # type: ignore[attr-defined]
        seconds = max(MIN_SECONDS, min(MAX_SECONDS, seconds))
        key = response_key(sender, handle)
        path = os.path.join(directory, LOG_NAME)
        makedirs_durably(directory)
        # Under the directory's flock as well: the server's workers are processes, and two
        # deliveries from one sender in two of them must not both find no reply (RFC 5230).
        with self._lock, directory_locked(directory):
            entries = self._read(path)
            if entries.get(key, 0) > now:
                return False
            entries = {k: until for k, until in entries.items() if until > now}
            if seconds > 0:
                entries[key] = now + seconds
            if len(entries) > MAX_LOG_ENTRIES:
                kept = sorted(entries.items(), key=lambda item: item[1])[-MAX_LOG_ENTRIES:]
                entries = dict(kept)
            write_atomic(path, json.dumps(entries, sort_keys=True).encode())
        return True

    @staticmethod
    def _read(path: str) -> dict[str, float]:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a damaged log costs at most one extra reply per sender
        if not isinstance(data, dict):
            return {}
        found = {}
        for key, until in data.items():
            with contextlib.suppress(TypeError, ValueError):
                found[str(key)] = float(until)
        return found


def build_reply(message: MessageView, request: VacationRequest, user: str, hostname: str) -> bytes:
    """The reply to ``message`` (RFC 5230 5), as bytes ready for submission."""
    original_subject = (message.values("Subject") or [""])[0]
    subject = request.subject if request.subject is not None else f"Auto: {original_subject}"
    sender = request.sender or user
    lines = [
        f"From: {header_text(sender, 'From')}",
        f"To: <{message.sender}>",
        f"Subject: {header_text(subject)}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {make_msgid('vacation', domain=hostname)}",
        "Auto-Submitted: auto-replied (vacation)",
        "Precedence: bulk",
    ]
    # The raw fields, never decoded ones: see replyfields.
    parent, references = reply_ids(
        (message.fields.get("message-id") or [""])[0], (message.fields.get("references") or [""])[0]
    )
    if parent is not None:
        lines.append(f"In-Reply-To: {parent}")
    if references:
        lines.append(f"References: {fold_ids(references)}")
    lines.append("MIME-Version: 1.0")
    # A variable may have put a bare CR, or an octet that isn't UTF-8, into the reason.
    reason = _LINE_END.sub("\r\n", request.reason)
    if request.mime:
        # The reason is a MIME entity with its own header (RFC 5230 4.4).
        return ("\r\n".join(lines) + "\r\n" + reason).encode("utf-8", "replace")
    lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    if not reason.endswith("\r\n"):
        reason += "\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + reason).encode("utf-8", "replace")
