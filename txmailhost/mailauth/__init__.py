"""Mail authentication: DKIM signing, SPF/DKIM/DMARC checks, and the DNS records to publish.

What it owns:
- ``resolver.py``: the one dnspython resolver (configured nameservers, cache, timeouts) all
  of this asks, from worker threads only.
- ``keys.py``: DKIM keys per domain, an Ed25519 and an RSA-2048 key per selector, in
  ``DATA/dkim/DOMAIN/`` (files mode 0600), with the active selector and rotation.
  ``sharedkeys.py``: the same keys in the database every node of a PostgreSQL store shares,
  and which of the two a config opens.
- ``bodyhash.py``: DKIM body canonicalisation and hashing over a stream (RFC 6376 3.4.3-3.4.5,
  3.7), so a 50 MiB message is read once in chunks, never held whole.
- ``signing.py``: dual DKIM signatures (RFC 8463: Ed25519 and RSA) of our users' mail and our
  DSNs, added before the message is made durable; ``SigningFilter`` for submission.
- ``verify.py``, ``spf.py``, ``dmarc.py``: the checks (dkimpy for DKIM and ARC, pyspf, our
  DMARC evaluator on publicsuffixlist); ``results.py`` the Authentication-Results field
  (RFC 8601, authres).
- ``checks.py``: ``InboundChecks``, the filter the inbound listener runs, and its policy.
- ``forwarding.py``: ARC sealing (RFC 8617) of what the inbound listener forwards elsewhere.
- ``reports.py``: DMARC aggregate reports (RFC 7489 7.2): results recorded per message in
  ``DATA/dmarc/``, a report per domain sent daily.
- ``dnsrecords.py``: the records ``txmailhost dns DOMAIN`` prints and checks; ``cli.py`` the
  ``dkim`` and ``dns`` commands; ``setup.py`` the wiring ``service.py`` calls once.

Imports: the filters' and delivery's interfaces, routing's route kinds, nothing of the
protocols or the config file (``setup.py`` reads the ``Config`` object). Invariants: a malformed signature, key or record is a ``permerror``/``neutral``
result, never an exception that loses a message; DNS never runs on the reactor thread.
"""
