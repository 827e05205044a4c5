"""Where accepted mail lives: the ``IMailStore`` interface and its backends.

``interfaces.py`` is what protocols and delivery see: ``deliver``/``append`` of a
``MessageSource`` (bytes or a file, never a path to link), provisioning and removing users,
errors whose ``permanent`` says whether retrying helps. ``IFileDelivery``/``IStagedAppend``
are optional: a store of files declares them to be handed an fsync'd file to link, not copy;
so are ``IMetadataStore`` and ``IAclStore`` (METADATA, ACL).
``backends.py`` names the backends for ``[store] backend``: ``memory.py`` keeps mail in memory
(tests, embedding; lost at restart); ``maildir.py`` is the durable default, described below;
``postgres.py`` keeps everything in a PostgreSQL database several nodes share (its tables and
migrations in ``postgres_schema.py``, its LISTEN thread, which the queue shares, in
``postgres_listen.py``, the check that replaces a connection the server closed while it sat
idle in ``pgconn.py``, ``txmailhost db`` in ``dbadmin.py``; docs/scaling.rst), with the
message bodies optionally in an S3-compatible object store (``s3blobs.py``; orphans reaped by
``blobgc.py``).
tests/store/test_contract.py is the contract every backend passes (test_acl.py and
test_metadata.py, those of the optional ACL and METADATA interfaces).

Maildir owns, on disk, ``DATA/mail/DOMAIN/LOCALPART/``: a Maildir++ tree (INBOX at the root, ``.Sent``,
``.Drafts``, ``.Trash``, ``.Junk`` beside it) that mutt or Dovecot can read, and in every mailbox
directory an index (``txmailhost-index.sqlite``) with UID, UIDVALIDITY, UIDNEXT, flags, internal
date, size and modseq, so readers (POP3, IMAP) never scan message files to learn what is there.
The index also keeps each message's header block (cached at delivery), expunge tombstones
(UID + modseq, for IMAP QRESYNC) and values a protocol derived once (IMAP BODYSTRUCTURE); the
user's ``subscriptions`` file lists subscribed folders, one per line; what a crash left in
a ``tmp/`` is swept by ``staging.py``. Only regular files in ``cur/`` and ``new/`` are
messages (``messagefiles.py``: a symbolic link or a directory there is never indexed or
read). A folder being deleted is renamed ``txmailhost-deleted.RANDOM`` in the user's
directory first, and removed after the answer (or, after a crash, at the next start).
The user's ``txmailhost-quota/`` holds the quota lock and the room reserved for mail on its
way in (``quotalock.py``: flock'd files that die with their process).
IMAP METADATA entries
(``metadata.py``) are JSON in ``txmailhost-metadata.json`` of their mailbox directory and, for
the account, ``txmailhost-server-metadata.json``. IMAP ACLs (``acl.py``, RFC 4314) of every
user's mailboxes are one SQLite table, ``DATA/mail/txmailhost-acl.sqlite``. ``restore.py``
fills a mailbox keeping its UIDs (import, migrate); while it links files in, the mailbox
directory holds ``txmailhost-restoring.json`` (``restore_journal.py``), so the next restore
undoes one that was killed before its index commit.
``txmailhost-text.sqlite`` beside each
index is the folder's full-text index for IMAP SEARCH (``textindex.py``: trigrams, filled by
searches, never by delivery; a cache dropped and rebuilt at will). ``changes.ChangeBus`` tells
open sessions (IMAP IDLE) that a mailbox changed, in process; what changed is read from the index.

May import: ``txmailhost._safeio``, Twisted, zope.interface, the standard library and (only in
``postgres*.py``/``dbadmin.py``, and only when that backend is chosen) psycopg, and (only in
``s3blobs.py``, only with ``blobs = "s3"``) boto3; never a protocol package.

Invariants a change must keep:
- a message is reported delivered or appended only after its file *and* the directory entry
  pointing to it are fsync'd; the index is a cache of the directory that can always be rebuilt
  from it (files without an index row get fresh UIDs, rows without a file are expunged);
- a file of ours is linked (or renamed, MOVE) into a mailbox and indexed under that mailbox's
  index lock, so a reconcile never takes it for another tool's and loses its keywords,
  INTERNALDATE and EMAILID;
- UIDs only grow; UIDVALIDITY changes only when a mailbox is recreated, or its index is made
  anew (a damaged one set aside, ``index.py``), and a session never acts on the UIDs of
  another UIDVALIDITY than the one it selected;
- flags are mirrored into the Maildir file name (``:2,FRS``) so other tools see them;
- every blocking call runs in the store's thread pool, never on the reactor thread.
"""

from txmailhost.store.interfaces import (
    IFileDelivery,
    IMailbox,
    IMailStore,
    InvalidMailboxName,
    IStagedAppend,
    MailboxExists,
    MessageInfo,
    MessageSource,
    NoSuchMailbox,
    NoSuchMessage,
    StoreError,
)

__all__ = [
    "IFileDelivery",
    "IMailStore",
    "IMailbox",
    "IStagedAppend",
    "InvalidMailboxName",
    "MailboxExists",
    "MessageInfo",
    "MessageSource",
    "NoSuchMailbox",
    "NoSuchMessage",
    "StoreError",
]
