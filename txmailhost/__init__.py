"""txmailhost: one Twisted process that receives, stores, relays and serves mail.

Packages, one concern each (see ../DESIGN.md of the project for the picture):

- ``smtp``: the ESMTP server (inbound port 25 role, submission later) and its replies.
- ``pop3``: the POP3 server over the store.
- ``store``: the ``IMailStore`` interface and its Maildir++ implementation with an index.
- ``accounts``: domains, users, password hashes (SQLite), the twisted.cred checker and realm.
- ``routing``: what happens to a recipient address (local mailbox, relay, reject).
- ``config``: the only reader of the TOML config file.
- ``service``: wires the pieces above into one ``MultiService`` from a ``Config``.
- ``cli``: the ``txmailhost`` admin command, sharing the code the server uses.

Imports flow one way: protocols -> routing, store and accounts interfaces -> storage.
"""

__version__ = "0.1.0.dev0"
