"""One ESMTP dialog with a receiving server: greeting, EHLO, STARTTLS, MAIL/RCPT/DATA, QUIT.

The order and the rules are RFC 5321 3.3 (mail transaction), RFC 2920 3.1 (with PIPELINING,
MAIL, the RCPTs and DATA go out in one write and the replies are read in order; if every RCPT
was refused but DATA still got 354, send only the final dot), RFC 3207 4.2 (after STARTTLS
forget everything learned before and say EHLO again) and RFC 1870 (a message larger than the
advertised SIZE is refused up front with 5.3.4, without sending it).

With CHUNKING (RFC 3030) the message goes as BDAT chunks instead of DATA; BODY=BINARYMIME
only that way. What the sender asked for travels on (SMTPUTF8, RET/ENVID/NOTIFY/ORCPT to a
server offering DSN, REQUIRETLS) or the recipient fails at once rather than lose it:
SMTPUTF8 to a server without it is 5.6.7 (RFC 6531 3.2, no downgrade), BINARYMIME without
BINARYMIME/CHUNKING 5.6.3, 8-bit content without 8BITMIME 5.6.3 (RFC 6152 3, not converted to
7 bit), REQUIRETLS without verified TLS and the server's REQUIRETLS 5.7.30 (RFC 8689 4.2.1).

Each recipient ends with the reply that concerns it: its RCPT reply if that refused it, else
the reply to the end of data (or to MAIL or DATA when those refused the whole transaction).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from txmailhost import xtext
from txmailhost.queue.interfaces import (
    BODY_BINARYMIME,
    DeliveryResult,
    MessageOptions,
    RecipientOptions,
)
from txmailhost.relay.client import (
    Capabilities,
    HostFailure,
    Reply,
    SMTPClientProtocol,
    Timeouts,
)

NO_TLS = "none"
OPPORTUNISTIC = "opportunistic"
REQUIRED = "required"
VERIFY = "verify"
TLS_MODES = (NO_TLS, OPPORTUNISTIC, REQUIRED, VERIFY)
DANE = "dane"  # not a configurable mode: the MX host's TLSA records decide (relay/dane.py)
VERIFIED_MODES = (VERIFY, DANE)
_PLAIN = MessageOptions()


async def _hello(proto: SMTPClientProtocol, hostname: str, timeouts: Timeouts) -> Capabilities:
    proto.send_lines(f"EHLO {hostname}")
    reply = await proto.next_reply(timeouts.ehlo, "the EHLO reply")
    if reply.code == 250:
        return Capabilities.from_reply(reply)
    if reply.code >= 500:  # an old server: plain SMTP (RFC 5321 3.2)
        proto.send_lines(f"HELO {hostname}")
        reply = await proto.next_reply(timeouts.ehlo, "the HELO reply")
        if reply.code == 250:
            return Capabilities()
    raise HostFailure(f"greeting refused: {reply.text}")


async def _quit(proto: SMTPClientProtocol, timeouts: Timeouts) -> None:
    """Say goodbye politely; the results are already decided, so errors don't matter."""
    try:
        proto.send_lines("QUIT")
        await proto.next_reply(timeouts.quit, "the QUIT reply")
    except HostFailure:
        pass
    finally:
        if proto.transport is not None:
            proto.transport.loseConnection()


async def _start_tls(
    proto: SMTPClientProtocol,
    hostname: str,
    caps: Capabilities,
    mode: str,
    tls_creator: Callable[[], Any],
    timeouts: Timeouts,
) -> Capabilities:
    if mode == NO_TLS:
        return caps
    if "STARTTLS" not in caps:
        if mode == OPPORTUNISTIC:
            return caps
        raise HostFailure("TLS is required but the server does not offer STARTTLS", tls=True)
    proto.send_lines("STARTTLS")
    reply = await proto.next_reply(timeouts.starttls, "the STARTTLS reply")
    if reply.code != 220:
        if mode == OPPORTUNISTIC:
            return caps
        raise HostFailure(f"TLS is required but STARTTLS was refused: {reply.text}", tls=True)
    proto.discard_buffered()  # nothing sent before the handshake may count (RFC 3207 4.2)
    proto.transport.startTLS(tls_creator())
    try:
        return await _hello(proto, hostname, timeouts)
    except HostFailure as e:
        raise HostFailure(f"after STARTTLS: {e}", tls=True) from None


async def _authenticate(
    proto: SMTPClientProtocol,
    caps: Capabilities,
    credentials: tuple[str, str],
    secure: bool,
    timeouts: Timeouts,
) -> None:
    """AUTH PLAIN (RFC 4954, RFC 4616) to a smarthost; the password only over TLS or loopback."""
    mechanisms = caps.extensions.get("AUTH", "").upper().split()
    if "PLAIN" not in mechanisms:
        raise HostFailure("the smarthost does not offer AUTH PLAIN")
    peer = proto.transport.getPeer()
    loopback = getattr(peer, "host", "") in ("127.0.0.1", "::1") or str(
        getattr(peer, "host", "")
    ).startswith("127.")
    if not secure and not loopback:
        raise HostFailure("refusing to send the smarthost password without TLS", tls=True)
    username, password = credentials
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    proto.send_lines(f"AUTH PLAIN {token}")
    reply = await proto.next_reply(timeouts.mail, "the AUTH reply")
    if reply.code != 235:
        raise HostFailure(f"smarthost authentication failed: {reply.text}")


def _check_class(reply: Reply, what: str) -> None:
    if reply.code // 100 == 3 or reply.code >= 600:
        raise HostFailure(f"unexpected reply to {what}: {reply.text}")


async def open_session(
    proto: SMTPClientProtocol,
    *,
    hostname: str,
    tls_mode: str,
    tls_creator: Callable[[], Any],
    timeouts: Timeouts,
    credentials: tuple[str, str] | None = None,
) -> Capabilities:
    """Greeting, EHLO, STARTTLS per ``tls_mode`` and, with ``credentials`` (a smarthost's
    username and password), AUTH; returns what the server offers for mail transactions."""
    greeting = await proto.next_reply(timeouts.greeting, "the greeting")
    if greeting.code != 220:
        raise HostFailure(f"greeting: {greeting.text}")
    caps = await _hello(proto, hostname, timeouts)
    plain_caps = caps
    caps = await _start_tls(proto, hostname, caps, tls_mode, tls_creator, timeouts)
    if credentials is not None:
        secure = caps is not plain_caps  # _start_tls returns new capabilities after TLS
        await _authenticate(proto, caps, credentials, secure, timeouts)
    return caps


async def transaction(
    proto: SMTPClientProtocol,
    caps: Capabilities,
    *,
    remote_mta: str,
    sender: str | None,
    recipients: list[str],
    size: int,
    read_chunk: Callable[[int], Deferred[bytes]],
    timeouts: Timeouts,
    options: MessageOptions = _PLAIN,
    recipient_options: Mapping[str, RecipientOptions] | None = None,
    verified_tls: bool = False,
    eight_bit: Callable[[], Deferred[bool]] | None = None,
) -> tuple[dict[str, DeliveryResult], bool]:
    """One mail transaction on an open session; also says whether the session may carry
    another message (only after a reply to the end of data is the state known to be clean).

    ``options`` and ``recipient_options`` are what the sender asked for (BODY, SMTPUTF8, DSN,
    REQUIRETLS); ``verified_tls`` says the session runs over TLS with a verified certificate
    (REQUIRETLS needs it); ``eight_bit`` tells whether the message holds an octet above 127,
    asked only of a server that offers no 8BITMIME."""
    recipient_options = recipient_options or {}
    refusal = _cannot_carry(caps, options, sender, recipients, size, verified_tls)
    if refusal is None:
        refusal = await _cannot_carry_8bit(caps, options, eight_bit)
    if refusal is not None:
        return {r: DeliveryResult.permanent(*refusal, remote_mta) for r in recipients}, True
    mail_command = f"MAIL FROM:<{sender or ''}>{_mail_params(caps, options, size)}"
    rcpt_commands = [
        f"RCPT TO:<{r}>{_rcpt_params(caps, recipient_options.get(r))}" for r in recipients
    ]
    chunking = "CHUNKING" in caps

    rcpt_replies: list[Reply] = []
    data: Reply | None = None
    if "PIPELINING" in caps:
        proto.send_lines(mail_command, *rcpt_commands, *([] if chunking else ["DATA"]))
        mail = await proto.next_reply(timeouts.mail, "the MAIL reply")
        for _ in recipients:
            rcpt_replies.append(await proto.next_reply(timeouts.rcpt, "a RCPT reply"))
        if not chunking:
            data = await proto.next_reply(timeouts.data_init, "the DATA reply")
    else:
        proto.send_lines(mail_command)
        mail = await proto.next_reply(timeouts.mail, "the MAIL reply")
        if mail.code < 400:
            for command in rcpt_commands:
                proto.send_lines(command)
                rcpt_replies.append(await proto.next_reply(timeouts.rcpt, "a RCPT reply"))
            if any(reply.code < 400 for reply in rcpt_replies) and not chunking:
                proto.send_lines("DATA")
                data = await proto.next_reply(timeouts.data_init, "the DATA reply")
    _check_class(mail, "MAIL")
    if mail.code >= 400:
        return {r: mail.result(remote_mta) for r in recipients}, False

    results: dict[str, DeliveryResult] = {}
    accepted = []
    for recipient, reply in zip(recipients, rcpt_replies, strict=True):
        _check_class(reply, "RCPT")
        if reply.code >= 400:
            results[recipient] = reply.result(remote_mta)
        else:
            accepted.append(recipient)
    if not accepted:
        if data is not None and data.code == 354:
            proto.send_lines(".")
            await proto.next_reply(timeouts.data_end, "the reply to an empty DATA")
        return results, False
    relayed = "DSN" not in caps  # no DSN beyond this hop: a SUCCESS wish is answered here
    if chunking:
        final = await proto.send_chunks(read_chunk, timeouts, "PIPELINING" in caps)
        _check_class(final, "BDAT")
        results.update({r: _final(final, remote_mta, relayed) for r in accepted})
        return results, True
    assert data is not None
    if data.code != 354:
        if data.code < 400:
            raise HostFailure(f"unexpected reply to DATA: {data.text}")
        results.update({r: data.result(remote_mta) for r in accepted})
        return results, False

    await proto.send_message(read_chunk, timeouts.data_block)
    final = await proto.next_reply(timeouts.data_end, "the reply to the end of data")
    _check_class(final, "the end of data")
    results.update({r: _final(final, remote_mta, relayed) for r in accepted})
    return results, True


def _final(reply: Reply, remote_mta: str, relayed: bool) -> DeliveryResult:
    result = reply.result(remote_mta)
    if relayed and reply.code < 400:
        return dataclasses.replace(result, relayed=True)
    return result


def _cannot_carry(
    caps: Capabilities,
    options: MessageOptions,
    sender: str | None,
    recipients: list[str],
    size: int,
    verified_tls: bool,
) -> tuple[str, str] | None:
    """Why this server can't take the message as it is, as (status, diagnostic); None if it
    can. Nothing is downgraded or converted on the way (no silent loss of what the sender
    asked for)."""
    limit = caps.max_size()
    if limit is not None and size > limit:
        return "5.3.4", f"message of {size} octets exceeds the server's SIZE limit {limit}"
    utf8 = options.smtputf8 or not all(a.isascii() for a in [sender or "", *recipients])
    if utf8 and "SMTPUTF8" not in caps:
        # RFC 6531 3.2: no downgrade; the sender learns it at once.
        return "5.6.7", "553 5.6.7 the message needs SMTPUTF8, which the server does not offer"
    if options.body == BODY_BINARYMIME and not ("BINARYMIME" in caps and "CHUNKING" in caps):
        return "5.6.3", "BODY=BINARYMIME message, and the server offers no BINARYMIME/CHUNKING"
    if options.requiretls and not (verified_tls and "REQUIRETLS" in caps):
        # RFC 8689 4.2.1: only over verified TLS to a server that offers REQUIRETLS.
        why = "does not offer REQUIRETLS" if verified_tls else "was not reached over verified TLS"
        return "5.7.30", f"REQUIRETLS support required: the server {why}"
    return None


async def _cannot_carry_8bit(
    caps: Capabilities,
    options: MessageOptions,
    eight_bit: Callable[[], Deferred[bool]] | None,
) -> tuple[str, str] | None:
    """RFC 6152 3: 8-bit content must not go to a server without 8BITMIME; the client
    converts it to 7 bit or returns it. We return it, as for the other extensions:
    converting means re-encoding the MIME parts, which breaks the DKIM signatures on
    them, for servers that hardly exist any more. Whatever BODY= the sender declared,
    the content decides (a message declared 8BITMIME may be plain ASCII, and then goes)."""
    if "8BITMIME" in caps or options.body == BODY_BINARYMIME or eight_bit is None:
        return None
    if not await eight_bit():
        return None
    return "5.6.3", (
        "the message has 8-bit content and the server does not offer 8BITMIME;"
        " it was not converted to 7 bit (RFC 6152)"
    )


def _mail_params(caps: Capabilities, options: MessageOptions, size: int) -> str:
    params = f" SIZE={size}" if "SIZE" in caps else ""
    if options.body == BODY_BINARYMIME:
        params += " BODY=BINARYMIME"
    elif "8BITMIME" in caps:
        params += " BODY=8BITMIME"
    if options.smtputf8:
        params += " SMTPUTF8"
    if "DSN" in caps:
        if options.ret:
            params += f" RET={options.ret}"
        if options.envid:
            params += f" ENVID={xtext.encode(options.envid)}"
    if options.requiretls:
        params += " REQUIRETLS"
    return params


def _rcpt_params(caps: Capabilities, dsn: RecipientOptions | None) -> str:
    """NOTIFY and ORCPT passed on to a server that offers DSN (RFC 3461 6.2)."""
    if dsn is None or "DSN" not in caps:
        return ""
    params = f" NOTIFY={','.join(dsn.notify)}" if dsn.notify else ""
    if dsn.orcpt:
        kind, _, address = dsn.orcpt.partition(";")
        params += f" ORCPT={kind};{xtext.encode(address)}"
    return params


async def quit_session(proto: SMTPClientProtocol, timeouts: Timeouts) -> None:
    await _quit(proto, timeouts)


async def run_transaction(
    proto: SMTPClientProtocol,
    *,
    hostname: str,
    remote_mta: str,
    sender: str | None,
    recipients: list[str],
    size: int,
    read_chunk: Callable[[int], Deferred[bytes]],
    tls_mode: str,
    tls_creator: Callable[[], Any],
    timeouts: Timeouts,
    credentials: tuple[str, str] | None = None,
    options: MessageOptions = _PLAIN,
    recipient_options: Mapping[str, RecipientOptions] | None = None,
    eight_bit: Callable[[], Deferred[bool]] | None = None,
) -> dict[str, DeliveryResult]:
    """A whole session for one message; raises HostFailure when the host is the problem."""
    caps = await open_session(
        proto,
        hostname=hostname,
        tls_mode=tls_mode,
        tls_creator=tls_creator,
        timeouts=timeouts,
        credentials=credentials,
    )
    results, _ = await transaction(
        proto,
        caps,
        remote_mta=remote_mta,
        sender=sender,
        recipients=recipients,
        size=size,
        read_chunk=read_chunk,
        timeouts=timeouts,
        options=options,
        recipient_options=recipient_options,
        verified_tls=tls_mode in VERIFIED_MODES,
        eight_bit=eight_bit,
    )
    await _quit(proto, timeouts)
    return results
