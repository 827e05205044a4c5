"""The anchors: Debian's own Postfix and Dovecot, started privately so txmailhost has a yardstick.

Each module offers ``unavailable()`` (why it can't run here: not installed, not root) and
``running(workdir)``, a context manager yielding a ``bench.server.Server``. They only read the
packages' binaries; their config, queue, sockets, logs and mail all live in ``workdir``, and
they listen on free loopback ports, so the system's mail services are never used or disturbed.
"""
