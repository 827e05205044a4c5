"""Address header fields (From, To, Cc, ...) read the way mail arrives: RFC 5322 §3.4 address
lists from any sender, so every reader here is linear in the value and never raises.

``parse`` is the address-list parser behind IMAP's ENVELOPE (RFC 3501 §7.4.2) and SEARCH
FROM/TO/CC/BCC. Why not ``email.utils.getaddresses``: it flattens groups, and ENVELOPE must
keep them (``To: team: a@x, b@y;`` is ``(NIL NIL "team" NIL) ... (NIL NIL NIL NIL)``), drops
source routes, and parses nested comments recursively (a header of thousands of ``(``
exhausted the stack). Here a flat tokenizer and a small state machine do it in one pass, never
raise, and accept what real mail holds (obsolete syntax, missing ``;``, stray specials) the way
Dovecot does: the result is always some list of addresses. Strings stay as they are on the
wire (encoded words are not decoded: ENVELOPE carries them raw); ``search_text`` decodes for
SEARCH.

``parse_address`` and ``get_addresses`` are ``email.utils.parseaddr`` and ``getaddresses``
made safe for hostile input (the spam filter's sample, Sieve's address tests).
``every_reading`` is for checks an attacker wants to slip past (DMARC's author domain, the
submission server's "From is yours"): a From the two parsers read differently is a From
different mail clients show differently, so such checks must hold for every address either
of them finds.
"""

from __future__ import annotations

import email.header
import email.utils
import unicodedata
from dataclasses import dataclass

from txmailhost.encodedwords import decode_header

_SPECIALS = '()<>[]:;@\\,."'
_DELIMITERS = frozenset("<>:;@,.")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """``name <@route:local@domain>``; ``domain`` None when the address has none."""

    name: str | None
    route: str | None
    local: str
    domain: str | None


@dataclass(frozen=True, slots=True)
class GroupStart:
    """``name:`` opening an RFC 5322 group (ENVELOPE: ``(NIL NIL "name" NIL)``)."""

    name: str


@dataclass(frozen=True, slots=True)
class GroupEnd:
    """The ``;`` that closes a group (ENVELOPE: ``(NIL NIL NIL NIL)``)."""


Address = Mailbox | GroupStart | GroupEnd


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "quoted", "comment", "literal", or the delimiter itself
    text: str
    spaced: bool  # whitespace or a comment came before it


def _tokens(text: str) -> list[_Token]:
    """Split an address header into words, quoted strings, comments, domain literals and
    delimiters. Unterminated quotes, comments and literals end at the end of the text."""
    tokens: list[_Token] = []
    i, n, spaced = 0, len(text), False
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            spaced = True
            i += 1
        elif c == "(":
            depth, i, out = 1, i + 1, []
            while i < n and depth:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    i += 2
                    continue
                depth += c == "("
                depth -= c == ")"
                if depth:
                    out.append(c)
                i += 1
            tokens.append(_Token("comment", "".join(out), spaced))
            spaced = True
        elif c in '"[':
            close = '"' if c == '"' else "]"
            i, out = i + 1, []
            while i < n and text[i] != close:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            i += 1
            body = "".join(out)
            if c == '"':
                tokens.append(_Token("quoted", body, spaced))
            else:
                tokens.append(_Token("literal", f"[{body}]", spaced))
            spaced = False
        elif c in _DELIMITERS:
            tokens.append(_Token(c, c, spaced))
            spaced = False
            i += 1
        elif c in ")]\\":
            i += 1  # stray closing or escape character: ignored
        else:
            start = i
            while i < n and text[i] not in _SPECIALS and text[i] not in " \t\r\n":
                i += 1
            tokens.append(_Token("word", text[start:i], spaced))
            spaced = False
    return tokens


def _phrase(tokens: list[_Token]) -> str:
    """A display name or group name: words as written, one space where there was any."""
    out: list[str] = []
    for token in tokens:
        if token.kind == "comment":
            continue
        if out and token.spaced:
            out.append(" ")
        out.append(token.text)
    return "".join(out).strip()


def _joined(tokens: list[_Token]) -> str:
    """A local part or domain: its pieces without the folding whitespace between them."""
    return "".join(t.text for t in tokens if t.kind != "comment")


def _addr_spec(tokens: list[_Token]) -> tuple[str | None, str, str | None]:
    """``[@route,@route:]local@domain`` inside angle brackets → (route, local, domain)."""
    route = None
    colon = next((i for i, t in enumerate(tokens) if t.kind == ":"), -1)
    if tokens and tokens[0].kind == "@" and colon > 0:
        route = _joined(tokens[:colon])
        tokens = tokens[colon + 1 :]
    at = max((i for i, t in enumerate(tokens) if t.kind == "@"), default=-1)
    if at < 0:
        return route, _joined(tokens), None
    return route, _joined(tokens[:at]), _joined(tokens[at + 1 :])


def parse(text: str) -> list[Address]:
    """The addresses of one address header's value, groups kept in order."""
    items: list[Address] = []
    phrase: list[_Token] = []
    pending: Mailbox | None = None
    comment: str | None = None  # the last comment: a name for ``user@host (Name)``
    in_group = False

    def flush() -> None:
        nonlocal pending, comment
        words = [t for t in phrase if t.kind != "comment"]
        if pending is not None:
            if pending.name is None and comment:
                pending = Mailbox(comment.strip() or None, None, pending.local, pending.domain)
            items.append(pending)
        elif words:
            # A bare word without "@" (``To: undisclosed``): a local part without a domain.
            items.append(Mailbox(None, None, _joined(words), None))
        pending, comment = None, None
        phrase.clear()

    tokens = _tokens(text)
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        kind = token.kind
        if kind == "comment":
            comment = token.text
            phrase.append(token)
        elif kind == "<":
            name = _phrase(phrase) or None
            end = next((j for j in range(i + 1, n) if tokens[j].kind == ">"), n)
            route, local, domain = _addr_spec(tokens[i + 1 : end])
            phrase.clear()
            pending, comment = Mailbox(name, route, local, domain), None
            i = end
        elif kind == ":" and not in_group and pending is None:
            items.append(GroupStart(_phrase(phrase)))
            phrase.clear()
            comment = None
            in_group = True
        elif kind == ";":
            flush()
            if in_group:
                items.append(GroupEnd())
                in_group = False
        elif kind == ",":
            flush()
        elif kind == "@" and pending is None:
            local = _joined([t for t in phrase if t.kind != "comment"])
            j, previous = i + 1, "@"
            while j < n and tokens[j].kind in ("word", "literal", ".", "comment", "quoted"):
                nxt = tokens[j]
                if nxt.kind == "comment":
                    comment = nxt.text
                elif nxt.spaced and previous not in ("@", "."):
                    break  # "a@b c@d": a missing comma, not a domain "bc"
                else:
                    previous = nxt.kind
                j += 1
            domain = _joined([t for t in tokens[i + 1 : j] if t.kind != "comment"])
            phrase.clear()
            pending = Mailbox(None, None, local, domain)
            i = j - 1
        elif pending is None and kind in ("word", "quoted", ".", "literal"):
            phrase.append(token)
        # anything else (a second "<...>", a stray ">" or ":") is ignored
        i += 1
    flush()
    if in_group:
        items.append(GroupEnd())  # a group left open at the end of the header
    return items


def mailboxes(text: str) -> list[Mailbox]:
    """The mailboxes of an address header, groups flattened (SORT, SEARCH)."""
    return [item for item in parse(text) if isinstance(item, Mailbox)]


def _decoded(text: str) -> str:
    try:
        return str(email.header.make_header(decode_header(text)))
    except Exception:  # a malformed encoded word: the raw text
        return text


def search_text(text: str) -> str:
    """What SEARCH FROM/TO/CC/BCC matches a string against (RFC 3501 §6.4.4: "contains the
    specified string in the envelope structure's ... field"): each address as
    ``name <local@domain>`` with its name decoded (RFC 2047), so a search for
    ``user@example.org`` finds ``<user (comment)@ example.org>`` and one for a real name finds
    it whether it was written before the address or in a comment after it."""
    parts = []
    for item in parse(text):
        if isinstance(item, GroupStart):
            parts.append(_decoded(item.name) + ":")
        elif isinstance(item, Mailbox):
            name = _decoded(item.name) + " " if item.name else ""
            parts.append(f"{name}<{_spec(item)}>")
    return ", ".join(parts)


def one_line_name(name: str) -> str:
    """A display name decoded (RFC 2047) as one line of text: every control character, line
    break and separator a space, runs of space one. An encoded word may decode to anything,
    "\r\n" and "<" included (RFC 2047 §5 keeps it a part of the name all the same)."""
    text = _decoded(name)
    return " ".join("".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text).split())


def shown_mailboxes(text: str) -> list[tuple[str, str]]:
    """An address field's raw value as a person reads it and a reply is addressed: for each
    mailbox (groups flattened), ``name <local@domain>`` and ``local@domain``. The name is
    decoded on one line (``one_line_name``) and quoted when it holds a special, so that
    ``"Support <carol@x>," <bob@y>`` is bob's one address, never two."""
    out = []
    for box in mailboxes(text):
        address = _spec(box)
        name = one_line_name(box.name) if box.name else ""
        if name and any(c in _SPECIALS for c in name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append((f"{name} <{address}>" if name else address, address))
    return out


def shown(text: str) -> str:
    """``shown_mailboxes`` of a raw value as one line ("" when it has no mailbox)."""
    return ", ".join(mailbox for mailbox, _address in shown_mailboxes(text))


ADDRESS_CAP = 1024  # characters of an address field's value parse_address reads


def parse_address(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr(value)``, which never raises: ("", "") where no address can
    be read.

    The library reads a comment by recursion, a level per nested "(": 500 of them in a
    1 KB From: (or 500 that never close) raise RecursionError, which failed the check: a
    451 the sender's server retries for days. Such a value is read again with its comments
    taken out (``without_comments``): the address is what the checks want of it. The
    library's time grows with the square of the length (60 ms for 4 KiB of "@", a second
    for 64 KiB, and the checks ask up to three times a message), so a value longer than
    ``ADDRESS_CAP`` even without its comments is read as no address (cut short, it could
    give another one)."""
    if len(value) > ADDRESS_CAP:
        value = without_comments(value)
        if len(value) > ADDRESS_CAP:
            return "", ""
    try:
        return email.utils.parseaddr(value)
    except RecursionError:
        pass
    try:
        return email.utils.parseaddr(without_comments(value))
    except Exception:  # the library on a value it can't take: no address, not a failed check
        return "", ""


def without_comments(value: str) -> str:
    """``value`` with each RFC 5322 comment (nested ones within it, quoted pairs in it) a
    space, as ``parseaddr`` skips them, in one pass; a comment never closed runs to the
    end, as the library reads one. Quoted strings are kept as they are."""
    kept: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if not depth:
                kept.append(char)
            continue
        if char == "\\" and (depth or quoted):
            escaped = True
            if not depth:
                kept.append(char)
        elif quoted:
            quoted = char != '"'
            kept.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if not depth:
                kept.append(" ")
        elif depth:
            continue
        else:
            quoted = char == '"'
            kept.append(char)
    return "".join(kept)


def get_addresses(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``, which never raises and is never slow: (display
    name, ``local@domain``) for each address of each value.

    A value the library would recurse on (nested comments) is read again without its
    comments, as ``parse_address`` does. One longer than ``ADDRESS_CAP`` even without them (a
    To of a hundred recipients) is read by ``parse``, which is linear, rather than dropped:
    a Sieve rule on such a field must still see its addresses."""
    found: list[tuple[str, str]] = []
    for value in values:
        if len(value) > ADDRESS_CAP:
            value = without_comments(value)
        if len(value) <= ADDRESS_CAP:
            try:
                found += email.utils.getaddresses([value])
                continue
            except RecursionError:
                try:
                    found += email.utils.getaddresses([without_comments(value)])
                    continue
                except Exception:  # the library on a value it can't take: the linear parser
                    pass
            except Exception:
                pass
        found += [(box.name or "", _spec(box)) for box in mailboxes(value)]
    return found


def every_reading(values: list[str]) -> list[str]:
    """Each ``local@domain`` (or bare word) that ``parse`` or ``getaddresses`` reads in
    ``values``, once each, in order.

    The two disagree on malformed lists, and mail clients disagree the same way:
    ``a@evil.example ceo@bank.example`` (no comma) is ``a@evil.example`` to ``parse`` and to
    Dovecot but ``@bank.example`` to Python's parser, ``<a@evil.example> ceo@bank.example``
    the other way round. A check that is to hold for what the reader sees holds for both."""
    readings = [_spec(box) for value in values for box in mailboxes(value)]
    readings += [address for _name, address in get_addresses(values)]
    return [address for address in dict.fromkeys(readings) if address]


def _spec(box: Mailbox) -> str:
    return box.local if box.domain is None else f"{box.local}@{box.domain}"
