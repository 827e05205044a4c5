"""Spam and virus filtering: filters of the ``txmailhost.filters`` chain, and their state.

What it owns:
- ``sample.py``: what is read of a message (the header section and the first part of the
  body, capped, decoded: charsets, quoted-printable/base64, HTML to text, links and
  attachment names), shared by the rules and the tokenizer, so no check reads 50 MiB.
- ``rules.py``: the named content rules, each with a score (``txmailhost spam rules``).
- ``tokens.py`` and ``bayes.py``: the tokenizer and the Bayesian classifier (Robinson's
  per-token probabilities, Fisher's chi-squared combining, as SpamBayes does); its per-user
  token store with a global fallback in ``DATA/spam/bayes.sqlite``.
- ``senders.py``: each user's allowed and blocked senders (``txmailhost spam allow|block``,
  and a sender rescued from Junk), in the same database.
- ``scoring.py``: the ``spam`` filter: rules + Bayes + sender lists -> one score, the
  ``X-Spam-*`` fields, Junk above ``junk_score``, 550 above ``reject_score``.
- ``training.py``: learning from what the user does over IMAP (into Junk: spam; out of Junk:
  ham), in a thread of its own; ``greylist.py``, ``clamd.py``, ``spamd.py`` and ``rspamd.py``:
  the other filters (greylisting, ClamAV, SpamAssassin's daemon, rspamd — whose score can
  also join ``scoring.py``'s).
- ``cli.py``: ``txmailhost spam rules|train|check|allow|block|forget|threshold|stats``.

Imports: ``txmailhost.filters`` and ``txmailhost.imap.observers`` (the interfaces it
implements: the IMAP server calls ``training.py`` through ``IMailboxObserver``) and the
standard library; nothing else of the protocols, nothing of the store. On disk: ``DATA/spam/`` (SQLite, WAL). Invariants: a
message costs a bounded read whatever its size; nothing is learned twice from one message
(SHA-256 of what was read); the reactor thread never touches SQLite.
"""
