"""``txmailhost dkim ...`` and ``txmailhost dns DOMAIN``: keys and the records to publish.

- ``dkim init DOMAIN [--selector S]`` — an Ed25519 and an RSA-2048 key (``keys.py``), used
  for signing at once (the server rereads the key directory; no restart);
- ``dkim rotate DOMAIN [--selector S]`` — a new pair signs from now on, the old one stays
  published until ``dkim retire DOMAIN S``;
- ``dkim list [DOMAIN]`` — one line per selector: domain, selector, state, created;
- ``dmarc report list [DOMAIN] [-v]`` — the aggregate reports received at the ``rua``
  address (``received.py``);
- ``dns DOMAIN [--check]`` — the records to publish (``dnsrecords.py``); with ``--check``
  what DNS says of each, exit status 1 when something is missing or wrong.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from txmailhost.mailauth import dnsrecords
from txmailhost.mailauth.keys import DKIMKeyError, KeyStore, check_domain, check_selector
from txmailhost.mailauth.sharedkeys import SharedKeyStore, open_key_store


def key_store(config: Any) -> KeyStore | SharedKeyStore:
    """``DATA/dkim``, or the table every node shares (``sharedkeys.py``)."""
    return open_key_store(config)


def register(
    commands: Any, with_config: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the ``dkim`` and ``dns`` commands to the CLI's subparsers."""
    dkim = commands.add_parser("dkim", help="DKIM signing keys per domain")
    actions = dkim.add_subparsers(metavar="ACTION", required=True)
    init = actions.add_parser("init", help="make the first keys of a domain (Ed25519 and RSA)")
    init.add_argument("domain")
    init.add_argument("--selector", help="selector name (default: sYYYYMM)")
    init.set_defaults(run=with_config(_init))
    rotate = actions.add_parser(
        "rotate", help="make a new key pair that signs from now on; the old one stays published"
    )
    rotate.add_argument("domain")
    rotate.add_argument("--selector", help="the new selector's name (default: sYYYYMM[-N])")
    rotate.set_defaults(run=with_config(_rotate))
    retire = actions.add_parser(
        "retire", help="forget an old selector (remove its DNS records first)"
    )
    retire.add_argument("domain")
    retire.add_argument("selector")
    retire.set_defaults(run=with_config(_retire))
    listing = actions.add_parser("list", help="one line per selector: domain selector state")
    listing.add_argument("domain", nargs="?")
    listing.set_defaults(run=with_config(_list))

    dmarc = commands.add_parser("dmarc", help="DMARC aggregate reports received")
    dmarc_actions = dmarc.add_subparsers(metavar="ACTION", required=True)
    report = dmarc_actions.add_parser("report", help="reports other providers sent us")
    report_actions = report.add_subparsers(metavar="ACTION", required=True)
    listing = report_actions.add_parser(
        "list", help="one line per report received at the rua address (per domain)"
    )
    listing.add_argument("domain", nargs="?", help="only this domain's rua mailbox")
    listing.add_argument("--verbose", "-v", action="store_true",
                         help="also the addresses failing mail came from")  # fmt: skip
    listing.set_defaults(run=with_config(_dmarc_list))

    dns = commands.add_parser("dns", help="the DNS records to publish for a domain")
    dns.add_argument("domain")
    dns.add_argument("--check", action="store_true", help="ask DNS whether they are published")
    dns.set_defaults(run=with_config(_dns))


def _init(args: argparse.Namespace, config: Any) -> int:
    keys = key_store(config)
    domain = check_domain(args.domain)
    if keys.selectors(domain):
        raise DKIMKeyError(f"{domain} has DKIM keys already: 'dkim rotate {domain}' adds new ones")
    return _made(keys, domain, keys.create(domain, args.selector))


def _rotate(args: argparse.Namespace, config: Any) -> int:
    keys = key_store(config)
    domain = check_domain(args.domain)
    if not keys.selectors(domain):
        raise DKIMKeyError(f"{domain} has no DKIM keys: 'dkim init {domain}' first")
    return _made(keys, domain, keys.create(domain, args.selector))


def _made(keys: KeyStore, domain: str, name: str) -> int:
    print(f"{domain}: selector {name} signs from now on; publish these records:")
    for key in keys.keys(domain, name):
        record = dnsrecords.Record(f"{key.selector}._domainkey.{domain}", "TXT",
                                   key.txt_record(), "")  # fmt: skip
        print(record.zone_line())
    return 0


def _retire(args: argparse.Namespace, config: Any) -> int:
    """The names as ``init`` and ``rotate`` keep them: ``EXAMPLE.org S202601`` was "no
    selector 'S202601'" (and the report repeated the domain as typed)."""
    domain, selector = check_domain(args.domain), check_selector(args.selector)
    key_store(config).retire(domain, selector)
    print(f"{domain}: selector {selector} retired")
    return 0


def _list(args: argparse.Namespace, config: Any) -> int:
    keys = key_store(config)
    for domain in [check_domain(args.domain)] if args.domain else keys.domains():
        for selector in keys.selectors(domain):
            created = time.strftime("%Y-%m-%d", time.gmtime(selector.created))
            state = "active" if selector.active else "published"
            print(f"{domain} {selector.name} {state} created={created}"
                  f" dns={selector.name}-ed25519,{selector.name}-rsa")  # fmt: skip
    return 0


def _dns(args: argparse.Namespace, config: Any) -> int:
    from txmailhost.mailauth.resolver import MailAuthResolver

    domain = check_domain(args.domain)
    records = dnsrecords.records_for(domain, config, key_store(config))
    if not args.check:
        print(dnsrecords.render(domain, records), end="")
        if not key_store(config).selectors(domain):
            print(f"; no DKIM keys yet: 'txmailhost dkim init {domain}' makes them")
        return 0
    resolver = MailAuthResolver(config.relay.nameservers, timeout=config.mailauth.dns_timeout)
    bad = 0
    for record, said, good in dnsrecords.check(records, resolver):
        bad += not good
        print(f"{'ok  ' if good else 'FIX '} {record.rtype:<4} {record.name}: {said}")
        if not good:
            print(f"     want: {record.zone_line()}")
    print(f"{len(records) - bad} of {len(records)} records as they should be")
    return 1 if bad else 0


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """A received report's text as the listing shows it: anyone may send a report, and an
    ``org_name`` holding a line break wrote a line of its making into the list (a C1
    control such as ``\\x9b`` drives some terminals); each is shown escaped."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def _dmarc_list(args: argparse.Namespace, config: Any) -> int:
    """Reads the INBOX of each domain's reports account through the mail store."""
    from txmailhost.accounts.backends import open_accounts
    from txmailhost.mailauth.received import reports_in_mailbox
    from txmailhost.ops.mailbox_admin import open_store, result_of
    from txmailhost.store.interfaces import INBOX

    local = config.mailauth.reports_local_part
    accounts = open_accounts(config)
    try:
        domains = [check_domain(args.domain)] if args.domain else accounts.list_domains()
        users = [f"{local}@{domain}" for domain in domains]
        missing = [user for user in users if not accounts.has_user(user)]
    finally:
        accounts.close()
    for user in missing:
        print(f"{user} is not an account: its reports are not kept"
              f" ('txmailhost user add {user}')", file=sys.stderr)  # fmt: skip
    store = open_store(config) if len(missing) < len(users) else None
    found = 0
    for user in users:
        if store is None or user in missing:
            continue
        for name, report in reports_in_mailbox(result_of(store.open(user, INBOX)), result_of):
            if isinstance(report, str):
                print(f"skipped {user} {name}: {report}", file=sys.stderr)
                continue
            found += 1
            begin = time.strftime("%Y-%m-%d", time.gmtime(report.begin))
            end = time.strftime("%Y-%m-%d", time.gmtime(report.end))
            domain, org = _printable(report.domain), _printable(report.org or "?")
            print(f"{begin}..{end} {domain} from={org}"
                  f" id={_printable(report.report_id or '?')} p={_printable(report.policy or '?')}"
                  f" messages={report.messages} pass={report.passed} fail={report.failed}")  # fmt: skip
            if args.verbose:
                for source, count in sorted(report.sources.items(), key=lambda kv: -kv[1]):
                    print(f"    failed from {_printable(source)}: {count}")
    if not found:
        print(f"no reports found (they arrive at {local}@DOMAIN)", file=sys.stderr)
    return 0
