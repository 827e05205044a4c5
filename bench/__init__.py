"""Benchmarks of txmailhost side by side with Postfix and Dovecot (issue 7).

``python -m bench`` (as root, from the project root) starts txmailhost, then a private Postfix,
then a private Dovecot, each from a temp dir on loopback ports, runs the same workloads on each
and prints figure | txmailhost | anchor | ratio; a full run also rewrites docs/benchmarks.rst.
``python -m bench --smoke`` is the seconds-long version CI runs to keep the harness working.

What lives where: ``smtp_load``, ``pop3_load``, ``imap_load``, ``tls_load`` (IMAPS handshakes)
and ``fsync_ceiling`` are the load generators (asyncio and threads, stdlib only; each also runs
alone with ``python -m bench.NAME``); ``memory`` samples RSS from /proc; ``targets`` starts
txmailhost and ``anchors/`` the Debian servers (``anchors/sasl`` is Postfix's SASL backend), all
yielding a ``server.Server``; ``suites`` and ``tls_suite`` turn loads into figures; ``runner``
and ``report`` drive it all and print it. Not part of the test suite: timings on shared CI machines
say nothing, so nothing here asserts a speed.
"""
