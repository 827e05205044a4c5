"""A user's storage limit from the ``quota_rule`` extra fields of Dovecot's passwd-file.

``user:hash:uid:gid:gecos:home:shell:userdb_quota_rule=*:storage=1G`` (or ``quota_rule=``,
as a passwd-file userdb reads it; ``quota_rule2=``... add more rules) is read as Dovecot's
quota plugin reads it (``quota_rule_parse_limits`` and ``quota_limit_parse`` in quota.c):

- the rule for ``*`` (or ``?``) is the user's limit: ``storage=N`` in kilobytes, ``bytes=N``
  in bytes, either with a unit (``b``, ``k``, ``M``, ``G``, ``T``, any case: only the first
  letter counts, so ``1GB`` is 1 GiB; units are powers of 1024); ``0`` or ``*:ignore`` is no
  limit. Dovecot refuses ``+``, ``-`` and ``%`` in this rule (they are relative to it), and
  so does this;
- ``messages=N`` (a count of messages) has no counterpart here, nor does a rule for one
  mailbox (``Trash:storage=+100M``) or a ``backend=`` rule: those are named in the report,
  and the storage limit of the ``*`` rule still applies.

What can't be read is named in the report and the account comes over without a limit of its
own (the domain's default applies), never with a limit that was guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Dovecot's units: the first letter after the digits, any case (quota_limit_parse).
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_LIMIT = re.compile(r"([0-9]+)(.*)", re.S)
_RULE_KEY = re.compile(r"(?:userdb_)?(quota_rule[0-9]*)")
DEFAULT_RULES = ("*", "?")  # the user's limit: "?" only when the backend has none of its own
MAX_QUOTA = 2**63 - 1  # what the accounts database keeps


@dataclass
class DovecotQuota:
    """What the rules say: ``limit`` in bytes (None: no limit, or none could be read),
    ``rules`` as written, ``problems`` (the rule could not be read: no limit is set) and
    ``dropped`` (parts with no counterpart here: the limit still holds)."""

    limit: int | None = None
    rules: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def extra_fields(extra: str) -> list[tuple[str, str]]:
    """(key, value) of the passwd-file's extra fields, separated by spaces (a value may hold
    ``:``, as ``*:storage=1G`` does)."""
    out = []
    for word in extra.split():
        key, _, value = word.partition("=")
        out.append((key, value))
    return out


def quota_of(extra: str) -> DovecotQuota:
    """The quota the extra fields give (``DovecotQuota``); no rule at all: no limit."""
    found = DovecotQuota()
    limit: int | None = None
    for key, value in extra_fields(extra):
        rule_key = _RULE_KEY.fullmatch(key)
        if rule_key is None:
            continue
        written = f"{key}={value}"
        found.rules.append(written)
        mailbox, colon, limits = value.partition(":")
        if not colon:
            found.problems.append(f"{written}: not MAILBOX:LIMITS")
            continue
        if mailbox not in DEFAULT_RULES:
            found.dropped.append(f"{written}: no per-mailbox limits here")
            continue
        if limits == "ignore":
            limit = 0
            continue
        if limits.startswith("backend="):
            found.dropped.append(f"{written}: a backend rule has no counterpart here")
            continue
        try:
            bytes_limit = _default_rule_bytes(limits, found.dropped, written)
        except ValueError as e:
            found.problems.append(f"{written}: {e}")
            continue
        if bytes_limit is not None:
            limit = bytes_limit
    if found.problems:
        return found
    found.limit = limit or None  # 0: Dovecot's "unlimited"
    return found


def _default_rule_bytes(limits: str, dropped: list[str], written: str) -> int | None:
    """The byte limit of the ``*`` rule's ``key=value:key=value`` limits (None: it sets
    none); ValueError with Dovecot's reason for what it refuses."""
    bytes_limit: int | None = None
    for part in limits.split(":"):
        key, _, value = part.partition("=")
        if key not in ("storage", "bytes", "messages"):
            raise ValueError(f"unknown limit {key!r}")
        if value[:1] in ("+", "-"):
            raise ValueError(f"{part}: the default rule can't be relative ({value[0]})")
        number = _LIMIT.fullmatch(value)
        if number is None:
            raise ValueError(f"{part}: not a number")
        unit = number[2][:1].lower()
        if unit == "%":
            raise ValueError(f"{part}: the default rule can't be a percentage")
        if unit not in _UNITS:
            raise ValueError(f"{part}: unknown unit {number[2]!r}")
        multiply = _UNITS[unit] if unit else (1024 if key == "storage" else 1)
        amount = int(number[1]) * multiply
        if key == "messages":
            if amount:
                dropped.append(f"{written}: no limit on the number of messages here")
            continue
        if amount > MAX_QUOTA:
            raise ValueError(f"{part}: more than {MAX_QUOTA} bytes")
        bytes_limit = amount
    return bytes_limit


def migrate_quota(accounts: Any, user: str, extra: str) -> dict[str, Any] | None:
    """Give ``user`` the limit of their Dovecot rules, through the call ``txmailhost user
    quota`` makes; a line of the report (None: the passwd-file gives no rule). A limit of
    the user's own that is here already is kept (set here since an earlier run, or by the
    administrator), and a different one of Dovecot's is reported beside it."""
    dovecot = quota_of(extra)
    if not dovecot.rules:
        return None
    rules = accounts.address_rules()
    domain = user.rpartition("@")[2]
    default = {name: quota for name, _alias, quota in accounts.domain_table()}.get(domain)
    here = rules.quota_of(user)
    report: dict[str, Any] = {"rules": dovecot.rules, "limit": dovecot.limit,
                              "problems": dovecot.problems, "dropped": dovecot.dropped}  # fmt: skip
    if dovecot.problems:
        report["result"] = "not set"
    elif here != default:  # the user's own limit
        report["result"] = "unchanged" if here == dovecot.limit else "kept"
        report["here"] = here
    elif dovecot.limit is None:
        report["result"] = "none" if default is None else "domain default"
        report["here"] = default
    else:
        rules.set_quota(user, dovecot.limit)
        report["result"] = "set"
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report's lines for one user's quota (``migrate_quota``)."""
    rules = " ".join(report["rules"])
    limit, here = report["limit"], report.get("here")
    result = report["result"]
    if result == "not set":
        lines = [f"quota not set (no limit of the user's own): {p}" for p in report["problems"]]
    elif result == "set":
        lines = [f"quota {shown_size(limit)} ({rules})"]
    elif result == "unchanged":
        lines = [f"quota {shown_size(limit)} there already ({rules})"]
    elif result == "kept":
        dovecot = "no limit" if limit is None else shown_size(limit)
        lines = [f"quota kept at {shown_size(here)}, set here; Dovecot's is {dovecot} ({rules})"]
    elif result == "domain default":
        lines = [f"quota: no limit in Dovecot ({rules}), the domain's default "
                 f"{shown_size(here)} applies here"]  # fmt: skip
    else:
        lines = [f"quota: no limit ({rules})"]
    return lines + [f"quota: not carried: {d}" for d in report["dropped"]]


def shown_size(limit: int) -> str:
    """``1073741824`` as ``1G``, as ``txmailhost user quota`` takes it; bytes otherwise."""
    for letter, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if limit % factor == 0:
            return f"{limit // factor}{letter}"
    return f"{limit} bytes"
