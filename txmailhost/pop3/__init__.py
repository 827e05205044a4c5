"""POP3 for txmailhost: the RFC 1939 server with CAPA, STLS, SASL PLAIN and RFC 3206 codes.

Owns the POP3 and POP3S listeners' protocol: ``server.POP3Factory`` (built by ``service.py``
from a twisted.cred Portal, a TLS creator and limits) and the wire vocabulary in ``replies.py``.
Keeps nothing on disk: the maildrop is the user's INBOX in the store, reached through the
Portal's ``IMailAccount`` avatar.

May import: Twisted (protocols, cred, logger), ``txmailhost.accounts.interfaces``,
``txmailhost.session`` (STLS, SASL, login: shared with SMTP and IMAP),
``txmailhost.sendnow`` (replies written to the socket at once) and
``txmailhost.store.interfaces``. Never a storage implementation, the config, or another protocol.

Invariants a change must keep:
- Passwords (USER/PASS, AUTH PLAIN) are accepted only over TLS (STLS or POP3S) or where
  ``PlaintextAuth`` allows (by default: from the server's own address),
  and are only advertised in CAPA when accepted (DESIGN invariant 6).
- Bytes pipelined after STLS are discarded before the handshake (CVE-2011-0411).
- DELE only marks; deletions are expunged at QUIT and +OK is sent after the store confirms.
  A dropped connection or an idle timeout deletes nothing (RFC 1939 §6).
- Message content is dot-stuffed with its line-start state carried across read chunks, so no
  message can end a response early and forge replies; bodies are streamed, never held whole.
- Errors are ``-ERR`` replies, never a traceback or a dropped connection, and never echo raw
  client bytes.

Why not ``twisted.mail.pop3.POP3`` (notes/twisted-mail-audit.md §3): it has no STLS; its RETR
transform leaves a first-line ``.`` unstuffed and mis-stuffs at 16 KiB chunk boundaries, so a
message can inject replies; DELE takes 0, repeats, and a non-numeric argument drops the
connection; QUIT answers before the mailbox sync; CAPA is hard-coded with joke entries and no
RESP-CODES/AUTH-RESP-CODE; and its Maildir mailbox is broken on Python 3 (text-mode reads,
str/bytes paths, UIDL that changes with flags).
"""

from txmailhost.pop3.server import POP3Factory, POP3Server

__all__ = ["POP3Factory", "POP3Server"]
