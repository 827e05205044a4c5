"""The ESMTP server: the inbound (port 25, MX) role now, submission (587/465) with AUTH next.

Owns: the session protocol (``server.py``, with BDAT of RFC 3030), the reply vocabulary
(``replies.py``), MAIL/RCPT argument parsing (``address.py``; ``params.py`` for the ESMTP
parameters: SIZE, BODY, SMTPUTF8, DSN, REQUIRETLS), the DATA reader and the BDAT line-end
watch (``datastream.py``) and the policy deciding
what is accepted (``policy.py``). An accepted message is handed to ``txmailhost.delivery``
(``ISubmission``: the files messages stream into, and the durable hand-off); the content
filters (``txmailhost.filters``) are asked at each stage when the factory has a chain.

May import: ``txmailhost.routing``, ``delivery`` (interfaces, ``IncomingMessage``),
``filters``, the store interfaces, ``txmailhost.session`` (STARTTLS, SASL, login: shared with
IMAP and POP3), twisted. Never the config file:
``SMTPFactory`` takes its collaborators and limits as arguments, so another Twisted application
can embed it with its own policy.

Invariants a change must keep:
- ``250`` after DATA only once ``submit`` fired (the message and its record are fsync'd);
- only ``<CRLF>.<CRLF>`` ends DATA; bare CR/LF refuse the message (RFC 5321 2.3.8), in BDAT
  chunks too (BINARYMIME excepted: it never leaves by DATA);
- a BDAT chunk is always read to its end, even when refused: its octets are never commands;
- nothing pipelined after STARTTLS is executed; replies leave in command order;
- port 25 never relays; unknown local users are refused at RCPT (550 5.1.1);
- every refusal carries an enhanced status code; no traceback reaches the client.
"""
