"""Wiring for mail authentication: what ``service.py`` builds from ``[mailauth]``, once.

``build_mailauth`` makes the one resolver, the key store and signer, and the filters that
go in front of the ``[filters] chain``: ``InboundChecks`` (inbound listener, unless
``check_inbound = false``) and ``SigningFilter`` (authenticated submission, unless ``sign
= false``). ``MailAuth.submission`` wraps the delivery hand-off the queue's DSNs go through
so they are signed too; ``MailAuth.forwarding`` the inbound listener's, so mail forwarded
elsewhere is ARC-sealed (``forwarding.py``). Nothing here touches the network or the reactor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from txmailhost.mailauth.checks import DNS_BUDGET, CheckPolicy, InboundChecks
from txmailhost.mailauth.forwarding import ForwardSealing, Sealer
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.reports import DMARCReports, ReportLog
from txmailhost.mailauth.resolver import MailAuthResolver
from txmailhost.mailauth.sharedkeys import SharedKeyStore, open_key_store
from txmailhost.mailauth.signing import Signer, SigningFilter, SigningSubmission
from txmailhost.received import networks


@dataclass
class MailAuth:
    resolver: MailAuthResolver
    keys: KeyStore | SharedKeyStore
    signer: Signer | None
    filters: list[Any] = field(default_factory=list)

    authserv_id: str = ""

    def forwarding(self, delivery: Any, reactor: Any, pool: Any) -> Any:
        """The inbound listener's hand-off: what is forwarded elsewhere gets an ARC set."""
        if self.signer is None or not any(isinstance(f, InboundChecks) for f in self.filters):
            return delivery  # nothing to sign with, or no verdict of ours to carry
        return ForwardSealing(delivery, Sealer(self.signer, self.authserv_id), reactor, pool)

    def report_service(self, send: Any, reactor: Any, pool: Any) -> DMARCReports | None:
        """The daily aggregate reports (``reports.py``), when inbound checks record them."""
        checks = [f for f in self.filters if isinstance(f, InboundChecks)]
        if not checks or checks[0].reports is None:
            return None
        return DMARCReports(checks[0].reports, self.resolver, self.authserv_id, send,
                            reactor, pool)  # fmt: skip

    def submission(self, delivery: Any) -> Any:
        """The hand-off for mail the server writes itself (DSNs): signed when signing is on."""
        return delivery if self.signer is None else SigningSubmission(delivery, self.signer)


def build_mailauth(config: Any, reactor: Any = None) -> MailAuth:
    settings = config.mailauth
    resolver = MailAuthResolver(config.relay.nameservers, timeout=settings.dns_timeout)
    keys = open_key_store(config)  # DATA/dkim, or shared by the nodes of a PostgreSQL store
    if isinstance(keys, SharedKeyStore):
        keys.refresh()  # now, at start: later reads happen off the reactor thread
    signer = Signer(keys) if settings.sign else None
    filters: list[Any] = []
    # Signing first: it and the checks never both act on one message (AUTH or not), and the
    # checks, blocking, then sit next to the blocking filters of [filters] chain (the spam
    # score), which the chain asks in the same trip to its pool.
    if signer is not None:
        # The reactor's own pool (a test's memory reactor has none: signing is then inline).
        get_pool = getattr(reactor, "getThreadPool", None)
        if get_pool is None:
            filters.append(SigningFilter(signer))
        else:
            filters.append(SigningFilter(signer, reactor, get_pool()))
    if settings.check_inbound:
        policy = CheckPolicy(settings.dmarc_reject, settings.dmarc_quarantine, settings.spf_fail)
        reports = ReportLog(os.path.join(config.data_dir, "dmarc"))
        # the lookups of a message end within the chain's time for a filter (DNS_BUDGET)
        budget = min(DNS_BUDGET, config.filters.timeout * 2 / 3)
        filters.append(InboundChecks(resolver, config.hostname, policy, reports=reports,
                                     dns_budget=budget,
                                     trusted_relays=networks(settings.trusted_relays)))  # fmt: skip
    return MailAuth(resolver, keys, signer, filters, authserv_id=config.hostname)
