"""METADATA entries and ACLs of a user's mailboxes in an export (``archive.py``).

What a user or their client set on their mailboxes besides mail: METADATA entries (RFC 5464:
a mailbox's comment, a client's settings; the account's own "server" entries) and ACLs
(RFC 4314: the mailboxes they share, and with whom). ``mailboxes.json`` keeps each mailbox's
as ``"metadata": {ENTRY: VALUE}`` and ``"acl": {IDENTIFIER: RIGHTS}``, ``account.json``
the account's entries as ``"metadata"``. A value that is UTF-8 is a JSON string; any other
(a value may hold any octet, NUL too) is ``{"base64": "..."}``. A store that keeps neither
(``IMetadataStore``, ``IAclStore``) exports none, and one that keeps none gets none back:
the report says so.

``import`` checks them with the rest of the export before anything is imported, by the
rules SETMETADATA and SETACL follow: entry names as ``imap/metadata.entry_name`` takes them,
values of at most ``MAX_VALUE_SIZE`` octets, at most ``MAX_ENTRIES`` a mailbox,
identifiers ``anyone`` or an address (``-`` before either for negative rights) and rights
letters of RFC 4314. An entry or an identifier the mailbox has here already is left as it
is (reported when it differs), as ``import`` leaves what it finds. An entry for the
importing user is left out: the owner's rights are implicit, never an ACL entry.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from txmailhost.imap.metadata import MAX_ENTRIES, MAX_VALUE_SIZE, entry_name
from txmailhost.imap.replies import BadCommand
from txmailhost.ops.mailbox_admin import AdminError, result_of
from txmailhost.ops.sourcefiles import shown
from txmailhost.store.acl import RightsError, check_identifier, normalize
from txmailhost.store.interfaces import IAclStore, IMetadataStore


@dataclass
class MailboxState:
    """A mailbox's (or the account's) exported entries and ACL, checked."""

    metadata: dict[str, bytes] = field(default_factory=dict)
    acl: dict[str, str] = field(default_factory=dict)


# -- export ------------------------------------------------------------------------------------


def export_metadata(store: Any, user: str, mailbox: str | None) -> dict[str, Any]:
    """The entries of ``mailbox`` (the account's when None) as JSON values; none when the
    store keeps none or the mailbox was deleted meanwhile."""
    if not IMetadataStore.providedBy(store):
        return {}
    try:
        entries = result_of(store.get_metadata(user, mailbox))
    except AdminError:  # NoSuchMailbox: deleted since it was listed
        return {}
    return {name: _json_value(value) for name, value in sorted(entries.items())}


def export_acl(store: Any, user: str, mailbox: str) -> dict[str, str]:
    if not IAclStore.providedBy(store):
        return {}
    try:
        return dict(sorted(result_of(store.get_acl(user, mailbox)).items()))
    except AdminError:
        return {}


def _json_value(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


# -- import ------------------------------------------------------------------------------------


def read_state(path: str, record: dict[str, Any], with_acl: bool = True) -> MailboxState:
    """The ``metadata`` (and ``acl``) of a mailbox's (or the account's) record of the JSON
    file at ``path``, checked; AdminError naming the file and the value otherwise. Absent
    (an export made before they were kept): none."""
    where, name = shown(path), record.get("name")
    at = f"mailbox {_short(name)}: " if with_acl else ""
    state = MailboxState()
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > MAX_ENTRIES:
        raise AdminError(f"{where}: {at}metadata is not an object of at most {MAX_ENTRIES} "
                         "entries")  # fmt: skip
    for entry, value in metadata.items():
        try:
            checked = entry_name(entry.encode("utf-8", "replace"), for_set=True)
        except BadCommand:
            raise AdminError(f"{where}: {at}{_short(entry)} is not a METADATA entry name") from None
        octets = _octets(value)
        if octets is None or len(octets) > MAX_VALUE_SIZE:
            raise AdminError(f"{where}: {at}the value of {checked} is not a string or "
                             f"{{\"base64\": ...}} of at most {MAX_VALUE_SIZE} octets")  # fmt: skip
        state.metadata[checked] = octets
    acl = record.get("acl", {}) if with_acl else {}
    if not isinstance(acl, dict):
        raise AdminError(f"{where}: {at}acl is not an object")
    for identifier, rights in acl.items():
        try:
            canonical = check_identifier(identifier)
            if not isinstance(rights, str):
                raise RightsError(f"rights {_short(rights)} are not a string")
            state.acl[canonical] = normalize(rights)
        except RightsError as e:
            raise AdminError(f"{where}: {at}acl entry {_short(identifier)}: {e}") from None
    return state


def _octets(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text[:80] + ("..." if len(text) > 80 else "")


def import_state(store: Any, user: str, mailbox: str | None, state: MailboxState) -> dict[str, Any]:
    """Restore ``state`` on ``mailbox`` (the account's entries when None) where it has none
    of its own; the report's entry: counts added, kept as they are here, and not kept (a
    store without METADATA or ACLs; over the entry limit)."""
    report: dict[str, Any] = {"metadata": 0, "metadata_kept": 0, "acl": 0, "acl_kept": 0,
                              "not_kept": None}  # fmt: skip
    problems = []
    if state.metadata and not IMetadataStore.providedBy(store):
        problems.append("this store keeps no METADATA")
    elif state.metadata:
        here = result_of(store.get_metadata(user, mailbox))
        changes = {k: v for k, v in state.metadata.items() if k not in here}
        report["metadata_kept"] = sum(
            1 for k, v in state.metadata.items() if k in here and here[k] != v
        )
        try:
            if changes:
                result_of(store.set_metadata(user, mailbox, dict(changes), MAX_ENTRIES))
            report["metadata"] = len(changes)
        except AdminError:  # TooManyEntries: nothing was changed
            problems.append(f"METADATA entries not restored: more than {MAX_ENTRIES} with "
                            "those here")  # fmt: skip
    acl = {k: v for k, v in state.acl.items() if k != user and v}
    if acl and not IAclStore.providedBy(store):
        problems.append("this store keeps no ACLs")
    elif acl and mailbox is not None:
        here_acl = result_of(store.get_acl(user, mailbox))
        for identifier, rights in acl.items():
            if identifier not in here_acl:
                result_of(store.set_acl(user, mailbox, identifier, rights))
                report["acl"] += 1
            elif here_acl[identifier] != rights:
                report["acl_kept"] += 1
    report["not_kept"] = "; ".join(problems) or None
    return report


def report_text(entry: dict[str, Any]) -> str | None:
    """What one mailbox's (or the account's) entries and ACL came to, for its report line;
    None when there were none."""
    parts = []
    if entry["metadata"]:
        parts.append(f"{entry['metadata']} METADATA entr(ies)")
    if entry["metadata_kept"]:
        parts.append(f"{entry['metadata_kept']} METADATA entr(ies) kept as they are here")
    if entry["acl"]:
        parts.append(f"ACL entries for {entry['acl']} identifier(s)")
    if entry["acl_kept"]:
        parts.append(f"{entry['acl_kept']} ACL entr(ies) kept as they are here")
    if entry["not_kept"]:
        parts.append(entry["not_kept"])
    return ", ".join(parts) or None
