"""SPF (RFC 7208) with pyspf, its DNS through our resolver.

pyspf looks its DNS function up as the module global ``spf.DNSLookup`` on every query; we
install a dispatcher once that sends each query to the resolver of the check running in
*this thread* (a thread-local), and to pyspf's own function otherwise, so another user of
pyspf in the process is unaffected. Checks are blocking and run in the filters' threads.

The MAIL FROM identity is checked, or, for the null reverse path (bounces), the HELO
identity as ``postmaster@HELO`` (RFC 7208 2.4). Every outcome is one of the seven results
(2.6); nothing raises.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import spf as pyspf

from txmailhost.mailauth.resolver import MailAuthResolver

_local = threading.local()
_pyspf_lookup = pyspf.DNSLookup
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")


def _dispatch(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> Any:
    resolver = getattr(_local, "resolver", None)
    if resolver is None:
        return _pyspf_lookup(name, qtype, tcpfallback, timeout)
    return resolver.spf_lookup(name, qtype, tcpfallback, timeout)


pyspf.DNSLookup = _dispatch


@dataclass(frozen=True)
class SPFResult:
    result: str  # one of RESULTS
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain checked (DMARC aligns it with From)
    sender: str  # the address checked (postmaster@HELO for the null sender)
    explanation: str = ""
    # the client a trusted relay received the message from, when that one was judged
    # (``checks.InboundChecks``, ``[mailauth] trusted_relays``); "" the client itself
    relayed_from: str = ""


# RFC 7208 4.6.4: a check may be given a total time (at least 20 s) after which it is a
# temperror. Without one, a record within every lookup limit (10 "mx" of 10 names: 111
# lookups) whose DNS answers just before each timeout held a filter thread for minutes.
QUERY_TIME = 20.0


def check_spf(
    resolver: MailAuthResolver, client_ip: str, sender: str | None, helo: str | None
) -> SPFResult:
    """The SPF result for ``sender`` (None: the null reverse path) sent from ``client_ip``."""
    helo = (helo or "").strip().strip("[]")
    if sender:
        identity, address = "mailfrom", sender
    else:
        identity, address = "helo", f"postmaster@{helo}"
    domain = address.rpartition("@")[2].lower()
    if not domain or "." not in domain:
        return SPFResult("none", identity, domain, address, "no domain to check")
    _local.resolver = resolver
    try:
        query = pyspf.query(
            i=client_ip,
            s=address,
            h=helo or domain,
            timeout=resolver.timeout,
            querytime=QUERY_TIME,
        )
        result, _code, explanation = query.check()
    except pyspf.TempError as e:
        result, explanation = "temperror", str(e)
    except Exception as e:  # pyspf on input it didn't expect: the record is at fault
        result, explanation = "permerror", f"{type(e).__name__}: {e}"
    finally:
        _local.resolver = None
    result = str(result).lower()
    if result not in RESULTS:
        result = "permerror"
    return SPFResult(result, identity, domain, address, str(explanation or ""))
