"""Sieve: users' own rules run at delivery, vacation replies, and ManageSieve to upload them.

What it owns:
- ``grammar.py``: the RFC 5228 grammar, text to a tree; ``language.py``: what each command
  and test takes, the supported extensions, the check PUTSCRIPT and delivery share.
- ``matching.py``: comparators, match types, address parts; ``dates.py``: RFC 5260 date
  parts; ``message.py``: what a script sees of a message; ``flags.py``: IMAP flag lists
  (imap4flags, RFC 5232); ``interpreter.py``: one run, its actions as an ``Outcome``.
- ``vacation.py``: whether to answer (RFC 5230, RFC 3834), the reply, the record of whom
  was answered; ``refusal.py``: the MDN a ``reject`` sends; ``scripts.py``: each user's
  scripts and which one is active.
- ``delivery.py``: the delivery agent's Sieve step; ``setup.py``: its wiring; ``shared.py``:
  the scripts and memories in PostgreSQL, for several nodes;
  ``managesieve.py`` and ``wire.py``: the ManageSieve server (RFC 5804) and its wire;
  ``admin.py``: ``txmailhost user vacation``.

On disk: ``DATA/sieve/DOMAIN/USER/`` holds ``NAME.sieve`` files, ``active`` (the name of the
active script, absent for none), ``vacation.json`` (who was answered, until when) and
``notified`` (the last script failure the user was told about); ``DATA/sieve/global/``
the administrator's scripts for ``include :global``.
With ``[store] backend = "postgres"`` the per-user state is in the database the nodes
share instead (``shared.py``, through ``store.pgstate``), so every node sees one copy.

May import: ``_safeio``, ``peer``, ``replyfields``, ``sasl``, ``session``, the accounts,
delivery and store interfaces (the store's only for the IMAP flag names). Never the SMTP, IMAP
or POP3 packages; delivery imports this package only through the object ``service.py`` hands
the delivery agent.

Invariants a change must keep:
1. A script never loses mail: a script that can't be read, parsed or run leaves the message
   in INBOX, and the error is logged (RFC 5228 2.10.6).
2. Scripts are written atomically (temporary file, fsync, rename, directory fsync): a crash
   never leaves half a script active. Names are checked so no script leaves its directory.
3. No automatic reply to ``<>``, to lists, to auto-submitted mail or to ourselves (RFC 3834
   2, RFC 5230 4.5-4.6); each reply goes out through the one durable hand-off.
4. What a received message says (its ids, its subject, whatever a variable took from it)
   reaches a header field we write only through ``replyfields``: real msg-ids, one line.
"""
