"""Who may receive and read mail here: domains, users, password hashes, and twisted.cred glue.

Owns ``DATA/accounts.sqlite`` (domains and users; aliases, forwards and quotas join later).
The server and the ``txmailhost`` CLI both go through ``AccountsDB``, and every lookup reads the
database, so an account added with the CLI can log in at once without a restart (DESIGN
invariant 5).

May import: the standard library, twisted.cred, zope.interface, ``txmailhost.store.interfaces``
(the realm hands out the store). Never a protocol package.

Invariants: passwords are stored only as scrypt hashes (``passwords.py``) and compared in
constant time; hashing runs in a thread pool, never on the reactor thread.
"""

from txmailhost.accounts.db import AccountError, AccountsDB, canonical_address, canonical_domain
from txmailhost.accounts.interfaces import IMailAccount

__all__ = ["AccountError", "AccountsDB", "IMailAccount", "canonical_address", "canonical_domain"]
