"""txmailhost: one Twisted process that receives, stores, relays and serves mail.

Packages and modules, one concern each (DESIGN.md of the project has the picture):

- ``smtp``: the ESMTP server, inbound (port 25, MX) and submission (587/465, AUTH), its replies.
- ``imap``: the IMAP4rev1 server over the store.
- ``pop3``: the POP3 server over the store.
- ``queue``: the relay queue on disk (retries, bounces) and local delivery after the ``250``.
- ``relay``: the outbound ESMTP client, MX resolution and TLS policy the queue delivers with.
- ``store``: the ``IMailStore`` interface and its Maildir++ implementation with an index.
- ``accounts``: domains, users, password hashes (SQLite), the twisted.cred checker and realm.
- ``routing``: what happens to a recipient address (mailboxes, aliases, forwards, relay, reject).
- ``tls``: certificates (self-signed on first start) and their reload.
- ``config``: the only reader of the TOML config file.
- ``service``: wires the pieces above into one ``MultiService`` from a ``Config``.
- ``cli``: the ``txmailhost`` admin command, sharing the code the server uses.

Imports flow one way: protocols -> routing, queue, store and accounts interfaces -> storage.
Another Twisted application can embed the protocol factories with its own realm
(docs/embedding.rst).
"""

__version__ = "0.1.0.dev0"
