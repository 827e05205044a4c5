"""The canonical form of domains and addresses that accounts are kept under.

Pure functions, shared by every accounts backend and by the code that looks accounts up (the
credential checker, the login throttle), so that ``Alice@Example.ORG`` is one account whatever
stores it.
"""

from __future__ import annotations

import re
import unicodedata

import idna
import idna.core

from txmailhost.accounts.interfaces import AccountError

# A conservative dot-atom local part (RFC 5322 3.2.3) without quoting: it also becomes a
# directory name, so nothing here may mean anything to a file system. Non-ASCII characters
# (RFC 6531/6532 internationalised addresses) are letters to it; controls, spaces, the
# Unicode line separators and lone surrogates (undecodable bytes of a command line, which
# UTF-8 can't store) are not. SMTP parses paths with its own grammar (smtp/address.py): this
# one names accounts, and a path that fails it merely matches none.
_ATOM = r"(?:[a-z0-9!#$%&'*+=?^_`{|}~-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029\ud800-\udfff])"
# Refused in the local part of a new account or alias (``new_address``), as PRECIS's
# IdentifierClass (RFC 8264 9.11-9.14) disallows them: format characters, invisible or
# reordering what is shown (U+202E RIGHT-TO-LEFT OVERRIDE makes "admin\u202e" look like
# another name, U+00AD SOFT HYPHEN and U+FEFF show as nothing), controls, surrogates,
# private-use and unassigned code points (what a later Unicode assigns may fold differently).
_INVISIBLE = frozenset({"Cf", "Cc", "Cs", "Co", "Cn"})
_JOINERS = frozenset("\u200c\u200d")  # Cf, but allowed in context (``_joins``)
_LOCAL = re.compile(rf"^{_ATOM}+(\.{_ATOM}+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def canonical_domain(domain: str) -> str:
    """Lower-case ASCII form of a domain, or AccountError saying why it isn't one.

    U-labels become A-labels by IDNA 2008 (RFC 5891, the ``idna`` package, with the UTS 46
    case mapping), so ``bücher.example`` and ``xn--bcher-kva.example`` are one domain."""
    text = domain.strip().rstrip(".").lower()
    try:
        text = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise AccountError(f"not a valid domain name: {domain!r}") from None
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AccountError(f"not a valid domain name: {domain!r} (expected e.g. example.org)")
    return text


def new_domain(domain: str) -> str:
    """``canonical_domain`` for a domain about to be served, refusing one whose last label is
    all digits (``10.0.0.1``, ``1.2.3.4.5``): no top-level domain is (RFC 1123 2.1, RFC 3696
    2), so it is an IP address or a typo, and an IP address is written as an address literal
    (``user@[10.0.0.1]``), which is never ours. Lookups keep the wider ``canonical_domain``, so
    a domain added before this check can still be found and removed."""
    name = canonical_domain(domain)
    if name.rpartition(".")[2].isdigit():
        raise AccountError(
            f"not a valid domain name: {domain!r} (its last label is all digits, which no"
            " top-level domain is; an IP address is not a mail domain)"
        )
    return name


def fold_local(local: str) -> str:
    """The lower-case NFC form accounts are kept under (RFC 6532 3.1). Lower-casing can undo
    NFC (``J`` + U+030C has no precomposed capital, but lower-cased it composes to U+01F0),
    so the result is normalised again: one spelling per account, however it was typed."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())


def canonical_address(address: str) -> str:
    """``local@domain`` in lower case, or AccountError saying what is wrong."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        raise AccountError(f"not an address: {address!r} (expected user@domain)")
    local = fold_local(local)
    if not _LOCAL.match(local) or len(local.encode("utf-8")) > 64:
        raise AccountError(f"unsupported local part in {address!r}")
    return f"{local}@{canonical_domain(domain)}"


def _joins(local: str, position: int) -> bool:
    """Whether the ZERO WIDTH (NON-)JOINER at ``position`` is where RFC 5892 A.1/A.2
    (CONTEXTJ, which PRECIS's IdentifierClass keeps, RFC 8264 9.8) allows it: after a virama,
    or for ZWNJ between joining letters (Persian, Malayalam, Sinhala spell words with them).
    Anywhere else it shows as nothing and only tells two names apart."""
    try:
        return idna.core.valid_contextj(local, position)
    except (ValueError, IndexError):
        return False


def new_address(address: str) -> str:
    """``canonical_address`` for a name about to be created (a user, an alias, a forward's
    target), refusing characters that show as nothing or as something else. Lookups take
    the wider ``canonical_address``, so an account made before this check can still be
    found, logged into and removed."""
    canonical = canonical_address(address)
    local = canonical.rpartition("@")[0]
    for position, char in enumerate(local):
        if char in _JOINERS and _joins(local, position):
            continue
        if unicodedata.category(char) in _INVISIBLE:
            raise AccountError(
                f"unsupported local part in {address!r}: U+{ord(char):04X}"
                f" ({unicodedata.name(char, 'unnamed')}) is invisible, a control or unassigned"
            )
    return canonical
