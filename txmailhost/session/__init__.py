"""What every mail protocol's session does the same way before a user is logged in.

- ``tls.py``: :class:`SessionTLS`, whether a connection is encrypted and how it got there,
  and STARTTLS/STLS started safely: whatever the client pipelined after the command, before
  the handshake, is thrown away and logged (RFC 3207 §4.2, RFC 2595 §3.1, CVE-2011-0411).
- ``auth.py``: the plain-text rule (a password only over TLS, or where the administrator
  allows it: DESIGN invariant 6), :class:`PasswordExchange`, the SASL PLAIN/LOGIN dialogue as a
  state machine that returns a challenge or the credentials and raises protocol-neutral
  ``SASLError``s, and :class:`PasswordLogin`, a login through the throttled Portal that counts,
  logs and pauses after a failure.

SMTP (``smtp/server.py``), POP3 (``pop3/server.py``) and IMAP (``imap/login.py``) use them and
keep only their own wire: each maps a challenge to ``334``/``+`` and an error to its own reply
(``replies.py``). A fourth protocol (ManageSieve) reuses them the same way.

May import: Twisted, ``txmailhost.peer``, ``txmailhost.sasl``, ``txmailhost.accounts``
(interfaces and the throttle's errors). Never a protocol package. Keeps nothing on disk.
"""
