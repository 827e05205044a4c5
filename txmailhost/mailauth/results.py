"""The ``Authentication-Results:`` field we add (RFC 8601), built with the authres library.

One field, our host name as the authserv-id, with one method result each for SPF, every
DKIM signature (RFC 6008's ``header.b`` tells two signatures of one domain apart), DMARC and, when the
message carries one, the ARC chain (RFC 8617 ``arc=``).
Values that come from the sender (the MAIL FROM address, d=, s=) are shown only when they
are plain tokens: a crafted one could otherwise forge a result of its own inside ours.

``claims_us`` recognises a field, arriving with the message, that claims our authserv-id
(RFC 8601 5: such fields are removed, since nobody else may speak in our name).
"""

from __future__ import annotations

import re

import authres
import authres.arc
import authres.dmarc

from txmailhost.mailauth.dmarc import DMARCResult
from txmailhost.mailauth.spf import SPFResult
from txmailhost.mailauth.verify import ARCResult, DKIMResult

_TOKEN = re.compile(r"[A-Za-z0-9._+@=/-]{1,254}")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")
# A domain, a DKIM selector (RFC 6376 3.1; "_" as some senders' are) or an algorithm: no "=",
# which a reader scanning loosely could take for a result of its own.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,254}")
_IP = re.compile(r"[0-9A-Fa-f.:]{2,45}")  # an address as ipaddress writes it


def _safe(value: str, pattern: re.Pattern[str] = _TOKEN) -> str | None:
    return value if value and pattern.fullmatch(value) else None


def authentication_results(
    authserv_id: str,
    spf: SPFResult | None,
    dkim: list[DKIMResult],
    dmarc: DMARCResult | None,
    arc: ARCResult | None = None,
) -> str:
    """The field's value (what follows ``Authentication-Results:``)."""
    results: list[authres.BaseAuthenticationResult] = []
    if spf is not None:
        # which address was judged, when it was not the client's (a trusted relay's client)
        comment = f"relayed from {spf.relayed_from}" if _safe(spf.relayed_from, _IP) else None
        if spf.identity == "mailfrom":
            mailfrom = _safe(spf.sender, _ADDRESS) or _safe(spf.domain, _NAME)
            results.append(authres.SPFAuthenticationResult(result=spf.result,
                                                           result_comment=comment,
                                                           smtp_mailfrom=mailfrom))  # fmt: skip
        else:
            results.append(authres.SPFAuthenticationResult(result=spf.result,
                                                           result_comment=comment,
                                                           smtp_helo=_safe(spf.domain, _NAME)))  # fmt: skip
    if not dkim:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    for signature in dkim:
        one = authres.DKIMAuthenticationResult(
            result=signature.result,
            header_d=_safe(signature.domain, _NAME),
            header_s=_safe(signature.selector, _NAME),
            header_a=_safe(signature.algorithm, _NAME),
        )
        b = _safe(signature.b)
        if b:
            one.properties.append(authres.AuthenticationResultProperty("header", "b", b))
        results.append(one)
    if dmarc is not None:
        results.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=dmarc.result,
                result_comment=f"p={dmarc.policy}" if dmarc.result == "fail" else None,
                header_from=_safe(dmarc.from_domain, _NAME),
            )
        )
    if arc is not None and arc.result != "none":
        results.append(authres.arc.ARCAuthenticationResult(result=arc.result,
                                                           header_as_d=_safe(arc.domain, _NAME)))  # fmt: skip
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    # One result a line (folded by the filter chain's render_fields): readable in a client.
    return str(header).partition(":")[2].strip().replace("; ", ";\n")


def claims_us(value: str, authserv_id: str) -> bool:
    """Does this Authentication-Results value speak for ``authserv_id``? (Case-insensitive;
    read as RFC 8601 2.2 writes it: comments and white space before it (CFWS, comments
    nested), a token or a quoted-string; an unparsable field is judged by its first token,
    so garbage can't slip through.) A leading "(comment)" or a quoted authserv-id once kept
    a forged field that parsers, authres and our spam rules among them, read as ours."""
    return _authserv_id(value).lower().rstrip(".") == authserv_id.lower().rstrip(".")


def _authserv_id(value: str) -> str:
    """The authserv-id at the start of ``value``, after any CFWS; "" when there is none."""
    at, depth = 0, 0
    while at < len(value):  # skip white space and (nested) comments
        char = value[at]
        if depth and char == "\\":
            at += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and not char.isspace():
            break
        at += 1
    rest = value[at:]
    if rest.startswith('"'):  # quoted-string: quoted-pairs stand for their character
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', rest, re.S)
        return re.sub(r"\\(.)", r"\1", quoted.group(1), flags=re.S) if quoted else ""
    return re.split(r"[\s;(]", rest, maxsplit=1)[0]
