"""The canonical form of domains and addresses that accounts are kept under.

Pure functions, shared by every accounts backend and by the code that looks accounts up (the
credential checker, the login throttle), so that ``Alice@Example.ORG`` is one account whatever
stores it.
"""

from __future__ import annotations

import re

from txmailhost.accounts.interfaces import AccountError

# A conservative dot-atom local part (RFC 5322 3.2.3) without quoting: it also becomes a
# directory name, so nothing here may mean anything to a file system.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def canonical_domain(domain: str) -> str:
    """Lower-case ASCII (IDNA) form of a domain, or AccountError saying why it isn't one."""
    text = domain.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
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
    local = local.lower()
    if len(local) > 64 or not _LOCAL.match(local):
        raise AccountError(f"unsupported local part in {address!r}")
    return f"{local}@{canonical_domain(domain)}"
