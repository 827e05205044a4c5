"""Parsing MAIL FROM / RCPT TO arguments: the reverse or forward path and ESMTP parameters.

RFC 5321 4.1.2 grammar, with the leniency real clients need (a space after the colon) and none
that opens a hole: a source route (``<@a.example:user@b.example>``) is accepted and ignored as
4.1.1.3 requires, so the relay decision is made on ``user@b.example``; quoted local parts are
kept quoted (they never match an account, so they can't smuggle ``%`` or ``@`` routing past the
relay check) unless their content is itself a plain dot-string: ``"alice"@example.org`` is the
same mailbox as ``alice@example.org`` (RFC 5322 3.4.1) and is unquoted; address literals (``user@[192.0.2.1]``) are never one of our domains.

With SMTPUTF8 (RFC 6531) the local part may be UTF-8 and the domain U-labels; domains are
kept as A-labels (IDNA 2008 through the ``idna`` package), so ``bücher.example`` and
``xn--bcher-kva.example`` are one domain for routing and for our local domains.

Twisted's ``smtp.Address`` is not used: the server's grammar there drops the parameters
(SIZE, BODY) that the policy needs (audit §1).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field

import idna

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_PLAIN_LOCAL = re.compile(rf"^{_DOT_STRING}$")
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 6531 3.3: atext and qtext grow by UTF8-non-ascii (any non-ASCII character that isn't
# a control or space; those would be header injection or unprintable).
_UTF8_ATEXT = r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029])"
_UTF8_DOT_STRING = re.compile(rf"^{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*$")
_BAD_UTF8_QUOTED = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029]|(?<!\\)"')
_LITERAL_ONLY = re.compile(rf"^{_LITERAL}$")
_MAILBOX = re.compile(rf"^(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})$")
_ROUTE = re.compile(rf"^@{_DOMAIN}(?:,@{_DOMAIN})*:")
_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_VALUE = re.compile(r"^[\x21-\x3c\x3e-\x7e]+$")
MAX_LOCAL = 64
MAX_PATH = 256


class AddressError(ValueError):
    """The argument doesn't parse; ``utf8`` is set when it would with SMTPUTF8."""

    def __init__(self, message: str, utf8: bool = False, in_params: bool = False) -> None:
        super().__init__(message)
        self.utf8 = utf8
        self.in_params = in_params


@dataclass(frozen=True, slots=True)
class Mailbox:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def is_literal(self) -> bool:
        return self.domain.startswith("[")


@dataclass(frozen=True, slots=True)
class PathArgument:
    """A parsed ``FROM:<...>`` or ``TO:<...>``; ``mailbox`` None is the null path ``<>``."""

    mailbox: Mailbox | None
    params: dict[str, str | None] = field(default_factory=dict)


def parse_mailbox(text: str, utf8: bool = False) -> Mailbox:
    """``local@domain``; with ``utf8`` (the transaction said SMTPUTF8) the RFC 6531 3.3
    grammar: UTF-8 in the local part (normalised to NFC, RFC 6532 3.1) and U-labels in the
    domain, which is kept as its A-label (IDNA 2008, RFC 5891) so that both forms of one
    domain route alike. Without ``utf8`` a non-ASCII address raises with ``utf8`` set."""
    if not text.isascii():
        if not utf8:
            raise AddressError(f"non-ASCII address {text!r}", utf8=True)
        return _parse_utf8_mailbox(text)
    match = _MAILBOX.match(text)
    if not match or len(match["local"]) > MAX_LOCAL:
        raise AddressError(f"bad address {text!r}")
    if match["domain"].startswith("[") and not is_address_literal(match["domain"]):
        raise AddressError(f"bad address literal in {text!r}")
    local = match["local"]
    if local.startswith('"'):
        content = _QUOTED_PAIR.sub(r"\1", local[1:-1])
        if _PLAIN_LOCAL.match(content):
            local = content
    return Mailbox(local, match["domain"])


_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+")


def is_address_literal(domain: str) -> bool:
    """``[...]`` as RFC 5321 4.1.3 has it: an IPv4 address, ``IPv6:`` and an IPv6 address,
    or a standardized tag, a colon and its content (``[a>b]`` or ``[foo]`` is none)."""
    inside = domain[1:-1]
    if inside[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(inside[5:])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(inside)
    except ValueError:
        return bool(_GENERAL_LITERAL.fullmatch(inside))
    return True


def a_label_domain(domain: str) -> str:
    """The ASCII (A-label) form of a domain given as U-labels or A-labels; AddressError if it
    isn't a valid IDNA 2008 name (RFC 5891 5.4)."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise AddressError(f"bad domain {domain!r}") from None


def _parse_utf8_mailbox(text: str) -> Mailbox:
    local, at, domain = text.rpartition("@")
    if not at or not domain:
        raise AddressError(f"bad address {text!r}")
    local = unicodedata.normalize("NFC", local)
    if local.startswith('"'):
        ok = len(local) > 1 and local.endswith('"') and not _BAD_UTF8_QUOTED.search(local[1:-1])
    else:
        ok = bool(_UTF8_DOT_STRING.match(local))
    if not ok or len(local.encode("utf-8")) > MAX_LOCAL:
        raise AddressError(f"bad address {text!r}")
    if domain.startswith("["):
        if not _LITERAL_ONLY.match(domain) or not is_address_literal(domain):
            raise AddressError(f"bad address {text!r}")
        return Mailbox(local, domain)
    return Mailbox(local, a_label_domain(domain))


def parse_path_argument(
    arg: str, keyword: str, allow_null: bool, utf8: bool | None = None
) -> PathArgument:
    """Parse ``FROM:<path> params`` (keyword 'FROM') or ``TO:<path> params`` ('TO').

    ``utf8``: may the address be non-ASCII (RFC 6531)? None lets the parameters decide: a
    MAIL FROM carrying ``SMTPUTF8`` may be; the server checks that the extension was offered.
    """
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise AddressError(f"expected {keyword}:<address>")
    rest = rest.lstrip(" ")
    if not rest.startswith("<"):
        raise AddressError("address must be enclosed in <>")
    end = _find_path_end(rest)
    if end < 0:
        raise AddressError("missing closing '>'")
    path, tail = rest[1:end], rest[end + 1 :]
    if tail and not tail.startswith(" "):
        raise AddressError("expected a space before parameters")
    if len(path) > MAX_PATH:
        raise AddressError("path too long")
    params = parse_params(tail)
    if utf8 is None:
        utf8 = "SMTPUTF8" in params
    if path == "":
        if not allow_null:
            raise AddressError("null path not allowed here")
        return PathArgument(None, params)
    route = _ROUTE.match(path)
    if route:
        path = path[route.end() :]
    if keyword == "TO" and path.lower() == "postmaster":
        # RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted.
        return PathArgument(Mailbox("postmaster", ""), params)
    return PathArgument(parse_mailbox(path, utf8), params)


def _find_path_end(text: str) -> int:
    """Index of the '>' that closes the path, skipping quoted strings and address literals
    (RFC 5321 4.1.3: ``dcontent`` may be ``>`` or ``"``, so ``<a@[x:>"]>`` is one path)."""
    if '"' not in text and "[" not in text:  # the common case, without a loop in Python
        return text.find(">")
    quoted = escaped = literal = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif literal:
            literal = ch != "]"
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "[" and not quoted:
            literal = True
        elif ch == ">" and not quoted:
            return i
    return -1


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters (RFC 5321 4.1.2 ``esmtp-param``), keywords upper-cased."""
    params: dict[str, str | None] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not _KEYWORD.match(key) or (eq and not _VALUE.match(value)):
            raise AddressError("malformed parameter", in_params=True)
        key = key.upper()
        if key in params:
            raise AddressError(f"parameter {key} given twice", in_params=True)
        params[key] = value if eq else None
    return params
