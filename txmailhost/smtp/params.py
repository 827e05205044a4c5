"""The ESMTP parameters of MAIL FROM and RCPT TO: checked, then turned into delivery options.

Which keywords a session accepts is what its EHLO offered (RFC 5321 4.1.1.11: a parameter of
an extension not offered is ``555 5.5.4``):

- MAIL: ``SIZE`` (RFC 1870), ``BODY=7BIT|8BITMIME`` (RFC 6152) and ``BODY=BINARYMIME``
  (RFC 3030, only with BDAT), ``SMTPUTF8`` (RFC 6531 3.4, no value), ``RET=FULL|HDRS`` and
  ``ENVID=xtext`` (RFC 3461 4.3, 4.4), ``REQUIRETLS`` (RFC 8689 4.1, only once TLS is up);
- RCPT: ``NOTIFY=NEVER|SUCCESS,FAILURE,DELAY`` and ``ORCPT=addr-type;xtext`` (RFC 3461 4.1,
  4.2).

The DSN values are xtext (RFC 3461 4): printable ASCII with ``+XX`` escapes. They are
decoded here and kept decoded (``MessageOptions.envid``, ``RecipientOptions.orcpt``); the
relay client encodes them again for the next hop (``txmailhost.xtext``), so they survive any
number of hops unchanged. A value whose escapes decode to a control character (CR, LF, NUL)
or to octets that aren't UTF-8 is refused with ``501 5.5.4``: both values end up in DSN
fields (RFC 3464 2.2.1, 2.3.1), and an octet that isn't UTF-8 made every report about the
message impossible to write (a failure was never reported, the message stayed queued).
"""

from __future__ import annotations

import re

from txmailhost import xtext
from txmailhost.delivery.interfaces import (
    BODY_7BIT,
    BODY_8BITMIME,
    BODY_BINARYMIME,
    MessageOptions,
    RecipientOptions,
)
from txmailhost.smtp import replies
from txmailhost.smtp.replies import SMTPReply

MAX_ENVID = 100  # RFC 3461 4.4
MAX_ORCPT = 500  # RFC 3461 4.2
NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY")
_ADDR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_SIZE = re.compile(r"^[0-9]{1,20}$")
# What a decoded ENVID or ORCPT may not hold: C0 and C1 controls, DEL, the Unicode line
# separators, and the lone surrogates ``xtext.decode`` leaves for octets that aren't UTF-8.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class ParameterError(Exception):
    """A parameter that can't be accepted; ``reply`` says why on the wire."""

    def __init__(self, reply: SMTPReply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _syntax(text: str) -> ParameterError:
    return ParameterError(replies.SYNTAX_ERROR.with_text(text))


def mail_options(
    params: dict[str, str | None], offered: frozenset[str], max_size: int
) -> MessageOptions:
    """The options of a MAIL FROM, or ``ParameterError``. ``offered`` are the extension
    keywords this session's EHLO listed (empty after HELO)."""
    allowed = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8"}
    allowed |= {"RET": "DSN", "ENVID": "DSN", "REQUIRETLS": "REQUIRETLS"}
    for key in params:
        if allowed.get(key) not in offered:
            raise ParameterError(replies.UNKNOWN_PARAMETER)
    body = BODY_7BIT
    if "BODY" in params:
        body = (params["BODY"] or "").upper()
        known = (BODY_7BIT, BODY_8BITMIME) + ((BODY_BINARYMIME,) if "BINARYMIME" in offered else ())
        if body not in known:
            raise _syntax("BODY must be one of " + " ".join(known))
    if "SIZE" in params:
        size = params["SIZE"] or ""
        if not _SIZE.match(size):
            raise _syntax("SIZE needs a number of octets")
        if int(size) > max_size:
            raise ParameterError(replies.MESSAGE_TOO_BIG)
    for flag in ("SMTPUTF8", "REQUIRETLS"):
        if flag in params and params[flag] is not None:
            raise _syntax(f"{flag} takes no value")
    ret = ""
    if "RET" in params:
        ret = (params["RET"] or "").upper()
        if ret not in ("FULL", "HDRS"):
            raise _syntax("RET must be FULL or HDRS")
    envid = ""
    if "ENVID" in params:
        try:
            envid = xtext.decode(params["ENVID"] or "")
        except ValueError:
            raise _syntax("ENVID must be xtext") from None
        if _NOT_TEXT.search(envid):
            raise _syntax("ENVID must be xtext of printable UTF-8 text")
        if not envid or len(params["ENVID"] or "") > MAX_ENVID:
            raise _syntax(f"ENVID must be 1 to {MAX_ENVID} characters of xtext")
    return MessageOptions(
        body=body,
        smtputf8="SMTPUTF8" in params,
        ret=ret,
        envid=envid,
        requiretls="REQUIRETLS" in params,
    )


def rcpt_options(params: dict[str, str | None], offered: frozenset[str]) -> RecipientOptions:
    """The DSN options of a RCPT TO (RFC 3461 4.1, 4.2), or ``ParameterError``."""
    for key in params:
        if key not in ("NOTIFY", "ORCPT") or "DSN" not in offered:
            raise ParameterError(replies.UNKNOWN_PARAMETER)
    notify: tuple[str, ...] = ()
    if "NOTIFY" in params:
        values = (params["NOTIFY"] or "").upper().split(",")
        if values == ["NEVER"]:
            notify = ("NEVER",)
        elif (
            not values
            or any(v not in NOTIFY_VALUES for v in values)
            or len(set(values)) != len(values)
        ):
            raise _syntax("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
        else:
            notify = tuple(v for v in NOTIFY_VALUES if v in values)
    orcpt = ""
    if "ORCPT" in params:
        raw = params["ORCPT"] or ""
        addr_type, semicolon, value = raw.partition(";")
        try:
            address = xtext.decode(value)
        except ValueError:
            raise _syntax("ORCPT must be addr-type;xtext") from None
        ok = semicolon and _ADDR_TYPE.match(addr_type) and address and len(raw) <= MAX_ORCPT
        if not ok or _NOT_TEXT.search(address):
            raise _syntax("ORCPT must be addr-type;xtext")
        orcpt = f"{addr_type.lower()};{address}"
    return RecipientOptions(notify=notify, orcpt=orcpt)
