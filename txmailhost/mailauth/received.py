"""DMARC aggregate reports *received*: parsed from the mailbox of our ``rua`` address.

Other providers send their reports about our domains to ``dmarc-reports@DOMAIN`` (the
address ``txmailhost dns`` publishes, ``[mailauth] reports_local_part``). ``txmailhost dmarc
report list`` reads that account's INBOX through the mail store (Maildir or PostgreSQL, as
the IMAP server does), finds each report attachment (``.xml``, ``.xml.gz``/``.gz``, ``.zip``; RFC
7489 7.2.1.1) and summarises it: who reported, for which of our domains, the time span,
how many messages passed or failed DMARC, and from where. Attachments are size-checked
before and after decompression (a "zip bomb" is skipped, not unpacked), and a file that
isn't a report is skipped with a note: the command never fails on what strangers mail us.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import gzip
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from txmailhost.asciinum import number_or
from txmailhost.store.interfaces import NoSuchMessage

MAX_REPORT = 32 * 1024 * 1024  # octets of XML after decompression
MAX_MEMBERS = 16  # XML files of one zip archive


@dataclass
class ReceivedReport:
    org: str
    report_id: str
    domain: str
    begin: int
    end: int
    policy: str
    messages: int = 0
    passed: int = 0
    failed: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # source IP -> failed messages


def _limited(stream: io.BufferedIOBase | gzip.GzipFile) -> bytes:
    data = stream.read(MAX_REPORT + 1)
    if len(data) > MAX_REPORT:
        raise ValueError("report larger than 32 MiB once decompressed")
    return data


def _xml_documents(filename: str, payload: bytes) -> Iterator[bytes]:
    name = filename.lower()
    if name.endswith(".zip") or payload[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            members = [m for m in archive.infolist() if m.filename.lower().endswith(".xml")]
            # A report is one XML file (RFC 7489 7.2.1.1); a few more are read, not a
            # thousand of 32 MiB each: 32 GB to unpack from a mail of a few megabytes
            if len(members) > MAX_MEMBERS:
                raise ValueError(f"{len(members)} XML files in one archive (at most "
                                 f"{MAX_MEMBERS} are read)")  # fmt: skip
            for member in members:
                if member.file_size <= MAX_REPORT:
                    with archive.open(member) as f:
                        yield _limited(f)
    elif name.endswith(".gz") or payload[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(payload)) as f:
            yield _limited(f)
    elif name.endswith(".xml"):
        yield payload


def parse_report(xml: bytes) -> ReceivedReport:
    """One aggregate report (RFC 7489 appendix C). Raises ``ValueError`` if it isn't one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}") from None
    if root.tag != "feedback":
        raise ValueError(f"not a DMARC report (root element {root.tag!r})")

    def text(path: str) -> str:
        return (root.findtext(path) or "").strip()

    def number(value: str) -> int:
        return number_or(value, 0)

    report = ReceivedReport(
        org=text("report_metadata/org_name"),
        report_id=text("report_metadata/report_id"),
        domain=text("policy_published/domain"),
        begin=number(text("report_metadata/date_range/begin")),
        end=number(text("report_metadata/date_range/end")),
        policy=text("policy_published/p"),
    )
    for record in root.findall("record"):
        count = number((record.findtext("row/count") or "").strip())
        dkim = (record.findtext("row/policy_evaluated/dkim") or "").strip()
        spf = (record.findtext("row/policy_evaluated/spf") or "").strip()
        report.messages += count
        if "pass" in (dkim, spf):
            report.passed += count
        else:
            report.failed += count
            source = (record.findtext("row/source_ip") or "?").strip()
            report.sources[source] = report.sources.get(source, 0) + count
    return report


def reports_in_mailbox(
    mailbox: Any, wait: Callable[[Any], Any]
) -> Iterator[tuple[str, ReceivedReport | str]]:
    """("UID n", report or why it was skipped) for each report attachment in ``mailbox`` (an
    ``IMailbox`` of any store; ``wait`` gives a Deferred's result), a message at a time."""
    for info in wait(mailbox.snapshot()).messages:
        name = f"UID {info.uid}"
        if info.size > 4 * MAX_REPORT:
            yield name, "message too large to be a report"
            continue
        try:
            source = wait(mailbox.open_message(info.uid))
        except NoSuchMessage:
            continue  # expunged meanwhile
        try:
            with source:
                message = email.message_from_binary_file(source, policy=email.policy.default)
            found_all = list(reports_in_message(message))
        except RecursionError:  # MIME nested deeper than the standard library's parser goes
            yield name, "MIME nested too deeply to read"
            continue
        for found in found_all:
            yield name, found


def reports_in_message(message: email.message.Message) -> Iterator[ReceivedReport | str]:
    """Each report attachment of ``message`` parsed, or why one was skipped."""
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename() or ""
        kind = part.get_content_type()
        if not filename and kind not in ("application/gzip", "application/zip",
                                         "application/xml", "text/xml"):  # fmt: skip
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            for xml in _xml_documents(filename or kind.replace("/", "."), payload):
                yield parse_report(xml)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            yield f"{filename or kind}: {e}"
