"""The IMAP4rev1 server (RFC 3501) with the extensions modern clients use: IDLE, UIDPLUS, MOVE,
SPECIAL-USE, NAMESPACE, ENABLE, LITERAL+, ID, UNSELECT, CHILDREN, CONDSTORE/QRESYNC, QUOTA,
ESEARCH, LIST-EXTENDED/LIST-STATUS, SASL-IR, APPENDLIMIT, STATUS=SIZE, MULTIAPPEND,
COMPRESS=DEFLATE, SEARCHRES, UTF8=ACCEPT, PREVIEW, METADATA, ACL/LIST-MYRIGHTS; IMAP4rev2 (RFC 9051) for a
session that enables it.

Owns nothing on disk: mail lives in the store (``IMailStore``), reached through the avatar
(``IMailAccount``) the Portal hands out at login. ``IMAPFactory`` takes its collaborators as
arguments (portal, reactor, TLS creator, limits), so another Twisted application can embed it
with its own realm.

May import: ``txmailhost.store.interfaces``, ``txmailhost.accounts.interfaces``,
``txmailhost.session`` (STARTTLS, SASL, login: shared with SMTP and POP3), Twisted.

Modules: ``server`` (connection, literals, dispatch), ``login`` (capabilities, TLS, login),
``state`` (the session states), ``compress`` (COMPRESS=DEFLATE), ``acl`` (ACL, shared
namespaces, rights checks), ``metadata``
(GETMETADATA/SETMETADATA), ``preview`` (FETCH PREVIEW), ``commands`` (authenticated state),
``append`` (APPEND's messages), ``quotaroom`` (the room a session last saw under each
owner's quota), ``messages`` (selected state), ``updates`` (untagged updates
and IDLE), ``session`` (the sequence-number map), ``parser``, ``fetch``, ``rendered`` (large
index-only FETCH batches kept for the next session), ``search``, ``mime``, ``addresses``
(address headers), ``names``, ``replies``.

Invariants a change must keep:
- APPEND is answered OK only after the message file and its directory are fsync'd;
- a literal larger than the limit is refused before any ``+`` continuation is sent;
- STARTTLS discards every byte the client pipelined after it;
- no plaintext password is accepted without TLS except from the server's own address
  (``PlaintextAuth``, configurable);
- no EXPUNGE is sent during FETCH, STORE or SEARCH, and sequence numbers change only when this
  session reports an expunge (RFC 3501 §7.4.1);
- a kept FETCH batch is handed out only for a batch equal to the one it was rendered from:
  the octets on the wire are those a fresh rendering would give;
- every mailbox name goes through ``names.decode`` and the store, which resolve it inside the
  logged-in user's own tree, or (``acl.py``, over a store that keeps ACLs) another owner's
  only when that owner's ACL gives the user the right the command needs;
- bad input gets BAD with the tag, never a traceback and never a dropped connection (except
  after too many bad commands or an unreadable non-synchronizing literal).
"""

from txmailhost.imap.server import IMAPFactory, IMAPServer

__all__ = ["IMAPFactory", "IMAPServer"]
