"""Delivery: the one durable hand-off of a message, and the choice of its mailboxes.

What it owns:
- ``interfaces.py``: ``ISubmission`` (``open``, ``submit``, ``submit_bytes``) and the
  ``Envelope`` producers hand it. The SMTP listeners, the queue's DSNs and the quota notice use
  it; webmail and Sieve will.
- ``submission.py``: ``Submission``, the implementation: spool record, relay queue or direct
  delivery, whichever makes this message durable soonest (then ``250``).
- ``incoming.py``, ``spares.py``: the files messages are written into while they arrive.
- ``local.py``: local mail acknowledged in the spool and delivered by a thread just after;
  recovery at start. ``agent.py``: the delivery agent, which picks each copy's mailbox then
  (INBOX, a plus-address's folder, Junk; Sieve later). ``notices.py``: the quota warning.
- ``mailboxes.py``: every call into the store. ``setup.py``: ``build_delivery`` for
  ``service.py``.

On disk: ``DATA/queue/spare/`` (empty files in stock; acknowledged local mail carrying its
record as the extended attribute ``user.txmailhost``) and ``DATA/queue/tmp/`` (messages
arriving, DSNs and notices being written). Both are swept of unacknowledged files at start.

Imports: ``_safeio``, ``routing``, the store's interfaces (and through ``mailboxes.py`` the
store object it is given); never a protocol package, never ``queue`` (the relay queue is an
object handed in, with ``submit(sender, recipients, path, queue_id)``, and the keywords
``options`` and ``recipient_options`` when the sender asked for ESMTP options).

Invariants a change must keep:
1. ``submit`` fires only once the message and the record that points to it are fsync'd (file
   and directory): after a crash at any instant, every acknowledged message is delivered
   exactly once or still queued (``local.recover_sync``), nothing acknowledged is lost.
2. Message bodies are streamed to disk past ``IncomingMessage.SPILL``, never held whole.
3. No blocking work on the reactor thread: fsyncs, links and listings run in the storage
   pool or the delivery thread.
"""
