"""``IMailboxRestore`` for the PostgreSQL store: an empty mailbox filled keeping its UIDs.

What ``restore.py`` does for Maildir, in one database transaction per mailbox: the mailbox
row is locked, and only when it holds no message are the messages inserted with their UIDs,
flags, INTERNALDATEs and modseqs (kept when all are above the row's HIGHESTMODSEQ, as the
Maildir restore does), then UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ set. A crash or an error
leaves the mailbox as it was, so ``migrate maildir-to-postgres`` re-run takes it again.

The shared ``uidvalidity_seq`` is moved past every UIDVALIDITY brought in, so a mailbox
created later (or deleted and created again) still gets a greater one (RFC 3501 2.3.1.1).

Registered as an adapter when this module is imported (the migration and restore commands
import it): ``IMailboxRestore(postgres_store)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.python.components import registerAdapter
from zope.interface import implementer

from txmailhost.store import objectids
from txmailhost.store.memory import _canonical
from txmailhost.store.postgres import PostgresStore
from txmailhost.store.restore import IMailboxRestore, Restored, RestoredMessage


@implementer(IMailboxRestore)
class PostgresRestore:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def restore_sync(
        self,
        user: str,
        mailbox: str,
        uidvalidity: int,
        uidnext: int,
        messages: Sequence[RestoredMessage],
        mailboxid: str | None = None,
    ) -> Restored | None:
        return self.store._call(
            self._restore, user, mailbox, uidvalidity, uidnext, messages, mailboxid
        )

    def _restore(
        self,
        conn: Any,
        user: str,
        mailbox: str,
        uidvalidity: int,
        uidnext: int,
        messages: Sequence[RestoredMessage],
        mailboxid: str | None = None,
    ) -> Restored | None:
        """As ``MaildirRestore``: MAILBOXID, EMAILIDs and save dates put back where they
        are valid object ids (a crafted id is not served), new ones otherwise."""
        store = self.store
        name = _canonical(mailbox)
        user_id = store._user_id(conn, user)  # made with INBOX and the default folders
        with conn.transaction():
            conn.execute(
                "INSERT INTO mailboxes (user_id, name) VALUES (%s, %s)"
                " ON CONFLICT (user_id, name) DO NOTHING",
                (user_id, name),
            )
            mailbox_id, current_next, current = conn.execute(
                "SELECT id, uidnext, highestmodseq FROM mailboxes WHERE user_id = %s"
                " AND name = %s FOR UPDATE",
                (user_id, name),
            ).fetchone()
            if conn.execute(
                "SELECT 1 FROM messages WHERE mailbox_id = %s LIMIT 1", (mailbox_id,)
            ).fetchone():
                return None
            keep_modseqs = all(m.modseq > current for m in messages)
            octets = 0
            highest = current
            for m in messages:
                message_id, size, chunks, header, blob = store._upload(conn, m.source)
                modseq = m.modseq if keep_modseqs else current + 1
                emailid = m.emailid if objectids.is_objectid(m.emailid) else None
                store._insert(
                    conn, message_id, mailbox_id, m.uid, modseq, m.flags, size,
                    m.internaldate or None, chunks, header, emailid, blob,
                )  # fmt: skip
                if m.savedate is not None:
                    conn.execute(
                        "UPDATE messages SET savedate = %s WHERE mailbox_id = %s AND uid = %s",
                        (m.savedate, mailbox_id, m.uid),
                    )
                octets += size
                highest = max(highest, modseq)
            next_uid = max([uidnext, current_next, *(m.uid + 1 for m in messages)])
            conn.execute(
                "UPDATE mailboxes SET uidvalidity = %s, uidnext = %s, highestmodseq = %s,"
                " recent_uid = %s, size = %s WHERE id = %s",
                (uidvalidity, next_uid, highest, next_uid, octets, mailbox_id),
            )
            if objectids.is_objectid(mailboxid):
                conn.execute(
                    "UPDATE mailboxes SET objectid = %s WHERE id = %s", (mailboxid, mailbox_id)
                )
            conn.execute(
                "SELECT setval('uidvalidity_seq', greatest(%s, (SELECT last_value FROM"
                " uidvalidity_seq)))",
                (uidvalidity,),
            )
            store._notify(conn, user, name)
        store._changed([(user, name)])
        return Restored(uidvalidity, True, len(messages))


registerAdapter(PostgresRestore, PostgresStore, IMailboxRestore)
