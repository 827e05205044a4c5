"""Who may receive and read mail here: domains, users, password hashes, and twisted.cred glue.

``interfaces.py`` says what the rest of the server needs: ``IAccounts`` (domains, users,
password hashes, login origins) and ``IAddressRules`` (aliases, forwards, quotas), which
``routing.py``, the checker and the CLI use; ``db.py`` is the SQLite backend behind them,
owning ``DATA/accounts.sqlite``. Every lookup reads the backend, so an account added with the
CLI can log in at once without a restart (DESIGN invariant 5). ``service.py`` and ``cli.py``
are the only places that pick the backend.

May import: the standard library, twisted.cred, zope.interface, ``txmailhost.store.interfaces``
(the realm hands out the store). Never a protocol package.

Invariants: passwords are stored only as scrypt hashes (``passwords.py``) and compared in
constant time; hashing runs in a thread pool, never on the reactor thread. The one exception
is a hash moved in from another server (``legacy.py``, Dovecot's ``{SCHEME}`` strings), kept
only until its user's next successful login replaces it with ours.
"""

from txmailhost.accounts.addresses import canonical_address, canonical_domain
from txmailhost.accounts.interfaces import AccountError, IAccounts, IAddressRules, IMailAccount

__all__ = [
    "AccountError",
    "IAccounts",
    "IAddressRules",
    "IMailAccount",
    "canonical_address",
    "canonical_domain",
]
