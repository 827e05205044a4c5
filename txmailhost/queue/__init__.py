"""The relay queue: mail for remote recipients, kept on disk until delivered or bounced.

What it owns:
- ``spool.py``: the on-disk spool under ``DATA/queue/`` — ``msg/ID`` (the message, a hard link
  to the file the SMTP server received) and ``env/ID.json`` (the envelope: sender, and each
  recipient with its state, attempts, next attempt and last reply), readable with ``cat``;
  ``control/`` holds requests dropped by the admin CLI (``ID.bounce``, ``ID.delete``,
  ``ID.retry``, ``flush``).
- ``scheduler.py``: the ``Queue`` — one Deferred per delivery attempt, exponential backoff,
  global and per-domain concurrency limits, expiry, delay warnings.
- ``bounce.py``: delivery status notifications (RFC 3464 / RFC 6522).
- ``service.py``: ``build_queue(config, reactor, pool)`` for ``txmailhost.service``, and
  ``ReturnToSender`` (DSNs resolved with the server's one ``Router`` and handed to
  ``txmailhost.delivery``'s ``submit``, like any other message).
- ``admin.py``: the ``txmailhost queue list|show|flush|retry|delete|bounce`` commands.
- ``postgres.py`` and ``claims.py``: with ``[queue] backend = "postgres"``, the same records
  as rows of the database several nodes share (``queue_messages``, ``queue_recipients``),
  and ``SharedQueue``, the scheduler's subclass whose runner claims due recipients with
  ``FOR UPDATE SKIP LOCKED`` and a lease instead of holding every message in memory.
  ``interfaces.IQueueRecords`` is what the CLI and the web console read either through.

Imports: ``_safeio``, ``fdlimit`` (the warning when out of open files), ``routing``, the
store interface (and in ``postgres.py`` the store's PostgreSQL schema and LISTEN thread),
``delivery.interfaces`` (and ``delivery.local`` for ``queue list``), and (only in ``service.py``) the ``relay`` package, which implements :class:`~txmailhost.queue.interfaces.ICourier`.

Invariants a change must keep:
1. ``submit`` fires only after the message file, the envelope and their directories are
   fsync'd (DESIGN invariant 1). The message is linked before the envelope is written, so an
   envelope always points at a complete message.
2. A message leaves the spool only when every recipient is delivered or bounced, and a bounce
   is handed to the store or the queue *before* the recipient is recorded as bounced (a crash
   in between may send a DSN twice, never lose one).
3. Only the server process writes envelopes; the CLI reads them and drops requests into
   ``control/``, which the server applies within a second (single writer, no lost updates).
   In PostgreSQL, every write is a transaction and a recipient's result is written only by
   the node holding its lease (``claims.py``).
4. Never a DSN to the null sender (RFC 5321 6.1, RFC 3464 2): no bounce loops.
"""
