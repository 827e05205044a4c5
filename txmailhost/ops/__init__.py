"""Running the server for real: metrics, the event log, admin commands, backup, moving in.

What it owns:
- ``metrics.py``: the Prometheus metric families (``txmailhost_*``) and the one-line hooks the
  protocol modules call (``metrics.login(...)``, ``metrics.fsync(fd)``). It imports nothing of
  txmailhost, so every package may call it without a cycle.
- ``exposition.py``: ``GET /metrics`` on ``[listen] metrics`` (twisted.web), the values read
  at scrape time (queue, thread pools) and the reactor-lag probe.
- ``eventlog.py``: the event log, ``[log] file`` (``DATA/log/txmailhost.log``), text or JSON,
  rotated by size; ``log_grep.py``: ``txmailhost log grep`` over it.
- ``control.py``: ``DATA/run/control.sock``, the running server's answer to ``who`` and
  ``kick``.
- ``admin.py``: registers the commands below in the CLI (one call from ``cli.py``):
  ``mailbox_admin.py`` (mailbox, search, fetch, flags, expunge, quota, index),
  ``server_admin.py`` (auth test, config show, status), ``archive.py`` (export, import),
  ``migrate.py`` (migrate dovecot, migrate postfix-aliases; ``dovecot_hashes.py`` parses the
  password hashes it moves in); the last two read a tree someone else wrote through
  ``sourcefiles.py`` (no link followed, only regular files).

May import: the accounts, store, queue and delivery packages' public pieces, and the protocol
servers' classes (``control.py``, to tell a session's user); nothing in a protocol package
imports from here but ``metrics``. The admin commands go through ``IMailStore`` and
``IAccounts``, the same code the servers use, so they are safe while the server runs.

Invariant: instrumentation never changes what a protocol answers, and costs microseconds.
"""
