"""The DNS records a domain served here should publish, and a check of what DNS says.

``txmailhost dns DOMAIN`` prints them in zone-file syntax, ready to paste: MX; SPF
(``v=spf1 mx -all``, plus the listening addresses that aren't loopback or wildcards);
both DKIM key records of every published selector (``keys.py``); DMARC (``p=quarantine``,
aggregate reports to a local address, RFC 7489 6.3); MTA-STS's ``_mta-sts`` TXT record (RFC
8461 3.1; the policy file itself is served over HTTPS at ``mta-sts.DOMAIN``); TLS-RPT's
``_smtp._tls`` (RFC 8460 3); DANE's TLSA record for the MX host (``3 1 1``: SHA-256 of our
certificate's public key, RFC 7672 3.1.1, which survives renewals that keep the key); and SRV
records so mail clients find the submission, IMAP and
POP3 services (RFC 6186, with RFC 8314's ``_submissions``). Ports are those of ``[listen]``;
a listener that is off is published as "not offered" (target ``.``, RFC 6186 3.4).

``--check`` asks DNS (the mail-auth resolver, ``relay.nameservers``) for each one and says
which are there, missing or different. Blocking: the CLI calls it, never the reactor.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from txmailhost.asciinum import is_number
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.resolver import DNSTempError, MailAuthResolver

# RFC 6186 / RFC 8314 service labels and the [listen] key whose port each one advertises.
SRV_SERVICES = (
    ("_submission._tcp", "submission"),
    ("_submissions._tcp", "submissions"),
    ("_imap._tcp", "imap"),
    ("_imaps._tcp", "imaps"),
    ("_pop3._tcp", "pop3"),
    ("_pop3s._tcp", "pop3s"),
)


@dataclass(frozen=True)
class Record:
    name: str  # absolute, without the final dot
    rtype: str  # "MX", "TXT", "SRV"
    value: str
    what: str  # what it is for, printed as a comment
    exact: bool = True  # must DNS hold exactly this (DKIM keys, MX), or just one of its kind

    def zone_line(self) -> str:
        """The record in zone-file syntax; a long TXT value split into 255-octet strings."""
        if self.rtype == "TXT":
            chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)]
            data = " ".join(f'"{c}"' for c in chunks)
            if len(chunks) > 1:
                data = f"( {data} )"
        else:
            data = self.value
        return f"{self.name}. 3600 IN {self.rtype} {data}"


def endpoint_port(description: str) -> int | None:
    """The port of a ``tcp:PORT:...`` endpoint description; None when the listener is off."""
    if not description:
        return None
    parts = re.split(r"(?<!\\):", description)
    for part in parts[1:]:
        if is_number(part):
            return int(part)
    return None


def _public_addresses(config: Any) -> list[str]:
    """The smtp listener's interface when it is one routable address (SPF ip4/ip6)."""
    found = re.search(r"interface=((?:\\:|[^:])+)", config.listen.smtp or "")
    if not found:
        return []
    try:
        address = ipaddress.ip_address(found.group(1).replace("\\:", ":"))
    except ValueError:
        return []
    if address.is_loopback or address.is_unspecified or address.is_link_local:
        return []
    return [f"ip{address.version}:{address}"]


def records_for(domain: str, config: Any, keys: KeyStore) -> list[Record]:
    """Everything ``domain`` should publish for this server."""
    host = config.hostname
    mailauth = config.mailauth
    spf = " ".join(["v=spf1", "mx", *_public_addresses(config), "-all"])
    found = [
        Record(domain, "MX", f"10 {host}.", "mail for the domain comes here"),
        Record(domain, "TXT", spf, "SPF: only the MX hosts send for the domain", exact=False),
    ]
    for key in keys.published(domain):
        found.append(
            Record(
                f"{key.selector}._domainkey.{domain}",
                "TXT",
                key.txt_record(),
                f"DKIM {key.algorithm} key",
            )
        )
    found.append(
        Record(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; adkim=r; aspf=r; "
            f"rua=mailto:{mailauth.reports_local_part}@{domain}",
            "DMARC: unaligned mail to spam, daily aggregate reports to us",
            exact=False,
        )
    )
    policy_id = hashlib.sha256(f"{domain} {host}".encode()).hexdigest()[:16]
    found.append(
        Record(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={policy_id}",
            f"MTA-STS (RFC 8461): serve the policy at https://mta-sts.{domain}/.well-known/"
            "mta-sts.txt",
            exact=False,
        )
    )
    found.append(
        Record(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}",
            "TLS-RPT (RFC 8460): TLS failure reports",
            exact=False,
        )
    )
    tlsa = _tlsa_value(served_certificate(config.tls, host))
    if tlsa:
        found.append(
            Record(
                f"_25._tcp.{host}",
                "TLSA",
                tlsa,
                "DANE (RFC 7672): our certificate's key; publish only in a DNSSEC-signed zone, "
                "and keep the key (or publish the next one first) when the certificate is renewed",
            )
        )
    for label, key in SRV_SERVICES:
        port = endpoint_port(getattr(config.listen, key))
        value = f"0 1 {port} {host}." if port else "0 0 0 ."
        found.append(Record(f"{label}.{domain}", "SRV", value, f"RFC 6186: {key}"))
    return found


def served_certificate(tls: Any, host: str) -> str:
    """The certificate a client naming ``host`` by SNI gets (DANE senders always name the MX
    host, RFC 7672 8.1): its ``[tls] sni`` pair, exact name before wildcard, else the
    default one."""
    from txmailhost.tls import sni_entry_for

    sni = getattr(tls, "sni", {}) or {}
    entry = sni_entry_for(host.rstrip(".").lower(), sni)
    return tls.certificate if entry is None else sni[entry][0]


def _tlsa_value(certificate_path: str) -> str:
    """``3 1 1 <hex>`` for the server's certificate; "" when there is none (yet) to read."""
    from txmailhost.relay.dane import tlsa_record_for

    try:
        with open(certificate_path, "rb") as f:
            return tlsa_record_for(f.read())
    except (OSError, ValueError):
        return ""


def render(domain: str, records: list[Record]) -> str:
    lines = [f"; DNS records to publish for {domain} (zone-file syntax)"]
    for record in records:
        lines.append(f"; {record.what}")
        lines.append(record.zone_line())
    return "\n".join(lines) + "\n"


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text).rstrip(";").lower()


def check(records: list[Record], resolver: MailAuthResolver) -> list[tuple[Record, str, bool]]:
    """For each record: (record, what DNS says, good?). A record of its kind that differs
    is good unless it must be exact (a DKIM key, the MX); a missing one never is."""
    results = []
    for record in records:
        try:
            answers = resolver.lookup(record.name, record.rtype)
        except DNSTempError as e:
            results.append((record, f"lookup failed: {e}", False))
            continue
        if record.rtype == "TXT":
            have = [b"".join(a.strings).decode("utf-8", "replace") for a in answers]
            kind = record.value.split(";")[0].split()[0]
            have = [h for h in have if _normal(h).startswith(_normal(kind))]
        else:
            have = [a.to_text() for a in answers]
        if not have:
            results.append((record, "missing", False))
        elif any(_normal(h) == _normal(record.value) for h in have):
            results.append((record, "ok", True))
        else:
            results.append((record, f"differs: {' | '.join(have)}", not record.exact))
    return results
