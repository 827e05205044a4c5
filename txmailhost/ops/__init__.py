"""Running the server for real: metrics, the doveadm-class admin commands, export and import.

What it owns:
- ``metrics.py``: the Prometheus metric families (names prefixed ``txmailhost_``) and the
  one-line hooks the protocol modules call (``metrics.login(...)``, ``metrics.fsync(fd)``).
  It imports nothing of txmailhost, so every package may call it without a cycle.
- ``exposition.py``: ``GET /metrics`` on ``[listen] metrics`` (twisted.web), the values read
  at scrape time (queue, thread pools) and the reactor-lag probe.
- ``mailbox_admin.py``: ``txmailhost mailbox|search|fetch|expunge|flags|quota|index|auth|
  config|status`` over the same store and accounts code the servers use.
- ``archive.py``: ``txmailhost export USER|--all DEST`` and ``import``: a self-describing
  directory (JSON manifest plus one file per message) keeping flags, UIDs and UIDVALIDITY.

Nothing here changes what a protocol answers; the admin commands go through ``IMailStore``
(safe while the server runs, like any other client of the store) and ``IAccounts``.
Files: none of its own under ``DATA/``.
"""
