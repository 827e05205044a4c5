"""Outbound delivery: finding a domain's mail servers and talking ESMTP to them.

What it owns:
- ``mx.py``: MX resolution with dnspython (RFC 5321 5.1: preference order, random among
  equals, implicit MX, RFC 7505 null MX), run in the thread pool, never on the reactor.
- ``client.py``: our own ESMTP client protocol (EHLO, STARTTLS, SIZE, 8BITMIME, PIPELINING,
  per-phase timeouts of RFC 5321 4.5.3.2, dot-stuffing that is immune to chunk boundaries,
  BDAT chunks of RFC 3030).
- ``session.py``: the dialog on one connection (greeting, EHLO, STARTTLS, AUTH to a
  smarthost, MAIL/RCPT/DATA or BDAT) and the per-recipient results it yields; the sender's
  wishes (SMTPUTF8, BINARYMIME, DSN, REQUIRETLS) passed on or refused, never downgraded;
  8-bit content refused by a server without 8BITMIME, never converted to 7 bit.
- ``courier.py``: ``RelayCourier``, the ``ICourier`` the queue calls: resolves, connects to each
  MX address in turn (or to the smarthost), applies the TLS policy, reuses connections.
- ``mtasts.py``: MTA-STS (RFC 8461) policies, fetched over HTTPS and cached;
  ``dane.py``: DANE (RFC 7672), TLSA records matched against the server's certificate in the
  handshake (the records come from ``mx.py``, trusted only from a declared validating resolver);
  ``tlsrpt.py``: the daily TLS reports (RFC 8460).

Why not ``twisted.mail.smtp.ESMTPClient``/``relaymanager``: they stuff dots per 16 KiB chunk
(outbound smuggling, observed), don't pipeline or send MAIL parameters, resolve MX through
twisted.names and keep a pickled queue (notes/twisted-mail-audit.md §2).

Imports: ``queue.interfaces`` (results), Twisted, dnspython, service-identity (through
``optionsForClientTLS``), twisted.web's client (MTA-STS). Keeps MTA-STS policies in
``DATA/queue/mta-sts/DOMAIN.json``; reads message files from the queue's spool.
Invariant: a message's bytes go out exactly as spooled (CRLF, dot-stuffed on the wire only,
or as BDAT chunks), minus our own ``Return-Path:`` (RFC 5321 4.4: added only at final
delivery).
"""
