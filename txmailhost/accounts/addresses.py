"""The canonical form of domains and addresses that accounts are kept under.

Pure functions, shared by every accounts backend and by the code that looks accounts up (the
credential checker, the login throttle), so that ``Alice@Example.ORG`` is one account whatever
stores it.
"""

from __future__ import annotations

import re
import unicodedata

import idna

from txmailhost.accounts.interfaces import AccountError

# A conservative dot-atom local part (RFC 5322 3.2.3) without quoting: it also becomes a
# directory name, so nothing here may mean anything to a file system. Non-ASCII characters
# (RFC 6531/6532 internationalised addresses) are letters to it; controls, spaces and the
# Unicode line separators are not.
_ATOM = r"(?:[a-z0-9!#$%&'*+=?^_`{|}~-]|[^\x00-\x7f\s\x80-\x9f\u2028\u2029])"
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


def canonical_address(address: str) -> str:
    """``local@domain`` in lower case, or AccountError saying what is wrong."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        raise AccountError(f"not an address: {address!r} (expected user@domain)")
    local = unicodedata.normalize("NFC", local).lower()  # RFC 6532 3.1: NFC
    if len(local.encode("utf-8")) > 64 or not _LOCAL.match(local):
        raise AccountError(f"unsupported local part in {address!r}")
    return f"{local}@{canonical_domain(domain)}"
