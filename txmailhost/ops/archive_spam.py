"""Users' own spam settings in an export (``archive.py``): written out, checked, restored.

A user's Junk threshold and the senders they allow or block (``txmailhost spam
threshold|allow|block --user``, kept in ``DATA/spam/bayes.sqlite``) are choices a user
would miss after a restore: mail from their boss in Junk again. ``account.json`` keeps
them::

    "spam": {"threshold": 3.5, "senders": [["@lists.example", "allow"], ...]}

What the classifier learned from the user's mail (``spam train``, messages moved to Junk)
is not exported: token counts, large, partly the global set's, which a restored user
starts from, as a new one does; training again from the restored mail brings them back.

Each sender is written as the filter matches it (``spam.cli.sender_key``: the local part
folded, the domain's A-label); an entry an earlier version kept as typed, which never
matched, is written in that form (a block winning over an allow of the same sender, as it
does in the filter), one that is no address at all is left out. ``import`` refuses a
threshold that is no finite score from -100 to 100 and an entry that is no address or
``@domain`` with ``allow`` or ``block``, before anything is imported. A threshold or a
sender the user has here already is left as it is; the report says when it differs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.ops.sourcefiles import shown
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.cli import MAX_SCORE, sender_key, token_store
from txmailhost.spam.scoring import owner_of, store_path

KINDS = ("allow", "block")


@dataclass(frozen=True)
class SpamSettings:
    """A user's exported settings, checked: the threshold and (sender, kind) pairs."""

    threshold: float | None
    senders: list[tuple[str, str]]


def open_settings(config: Any, create: bool) -> TokenStore | None:
    """The store of the spam settings; None when there is none and ``create`` is false (an
    export doesn't make ``DATA/spam/bayes.sqlite`` on a server that never used it)."""
    if not create and not os.path.exists(store_path(config.data_dir)):
        return None
    return token_store(config)


def export_spam(store: TokenStore | None, user: str) -> dict[str, Any]:
    """The ``spam`` record of ``user``'s ``account.json``."""
    if store is None:
        return {"threshold": None, "senders": []}
    owner = owner_of(user)
    senders: dict[str, str] = {}
    for address, kind in store.senders(owner):
        key = sender_key(address)
        if key is not None and kind in KINDS and senders.get(key) != "block":
            senders[key] = kind
    return {"threshold": store.threshold(owner), "senders": sorted(map(list, senders.items()))}


def read_spam(account_path: str, record: object) -> SpamSettings | None:
    """The ``spam`` record of ``account.json`` checked (module docstring); None when the
    export has none (one made before it was kept)."""
    if record is None:
        return None
    where = shown(account_path)
    if not isinstance(record, dict) or not isinstance(record.get("senders", []), list):
        raise AdminError(f"{where}: spam is not an object with a list of senders")
    threshold = record.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
        or abs(threshold) > MAX_SCORE
    ):
        raise AdminError(f"{where}: spam threshold {_short(threshold)} is not a score from "
                         f"{-MAX_SCORE:g} to {MAX_SCORE:g}")  # fmt: skip
    senders = []
    for entry in record.get("senders", []):
        key = None
        if isinstance(entry, list) and len(entry) == 2 and entry[1] in KINDS:
            key = sender_key(entry[0]) if isinstance(entry[0], str) else None
        if key is None:
            raise AdminError(f"{where}: spam sender {_short(entry)} is not an address or "
                             "@domain with allow or block")  # fmt: skip
        senders.append((key, entry[1]))
    return SpamSettings(None if threshold is None else float(threshold), senders)


def _short(value: object) -> str:
    text = repr(value)
    return text[:80] + ("..." if len(text) > 80 else "")


def import_spam(config: Any, user: str, settings: SpamSettings | None) -> dict[str, Any]:
    """Restore ``settings`` as ``user``'s where the user has none here; the report's entry."""
    report: dict[str, Any] = {"threshold": None, "threshold_here": None, "senders": 0,
                              "senders_kept": 0}  # fmt: skip
    if settings is None or (settings.threshold is None and not settings.senders):
        return report
    store = open_settings(config, create=True)
    assert store is not None
    try:
        owner = owner_of(user)
        if settings.threshold is not None:
            here = store.threshold(owner)
            if here is None:
                store.set_threshold(owner, settings.threshold)
                report["threshold"] = settings.threshold
            elif here != settings.threshold:
                report["threshold_here"] = here
        listed = dict(store.senders(owner))
        for address, kind in settings.senders:
            if address not in listed:
                store.set_sender(owner, address, kind)
                listed[address] = kind
                report["senders"] += 1
            elif listed[address] != kind:
                report["senders_kept"] += 1
    finally:
        store.close()
    return report


def report_line(entry: dict[str, Any]) -> str | None:
    """The report's line for one user's spam settings (``import_spam``), None for none."""
    parts = []
    if entry["threshold"] is not None:
        parts.append(f"Junk threshold {entry['threshold']:g}")
    if entry["threshold_here"] is not None:
        parts.append(f"Junk threshold {entry['threshold_here']:g} kept (the export's differs)")
    if entry["senders"]:
        parts.append(f"{entry['senders']} sender(s) allowed or blocked")
    if entry["senders_kept"]:
        parts.append(
            f"{entry['senders_kept']} sender(s) kept as listed here (the export lists them "
            "the other way)"
        )
    return "spam: " + ", ".join(parts) if parts else None
