"""What the rest of the server needs from accounts, whatever keeps them.

``IAccounts`` (who exists: domains, users, password hashes, where they logged in from) and
``IAddressRules`` (what mail to an address does: aliases, forwards, quotas) are shaped like the
administrator's and the router's operations, not like SQL, so a PostgreSQL or LDAP backend can
stand behind them; ``db.py`` is the SQLite one. Their methods block (a database round trip): the
server calls them from its accounts thread pool, never on the reactor (DESIGN invariant 3).
Every lookup reads the backend, so a change made with the CLI applies at once (invariant 5).

Errors: a request the backend refuses (no such user, a bad address, a weak password) raises
:class:`AccountError`, permanent and meant for the administrator; anything else (the database
is unreachable) is an ordinary exception, which the protocols answer as a temporary failure.

Also here: the avatar every protocol asks the Portal for, and where accounts log in from.
"""

from typing import Any

from zope.interface import Attribute, Interface


class AccountError(Exception):
    """A request the accounts backend refuses; the message is meant for the administrator.

    Permanent: retrying the same request gives the same answer."""


class IAccounts(Interface):
    """Domains and users with their password hashes (addresses in canonical lower case)."""

    # -- domains -------------------------------------------------------------------------------

    def add_domain(domain: str, alias_of: str | None = None) -> str:
        """Serve ``domain`` (or make it an alias of the served ``alias_of``); its canonical
        name."""

    def remove_domain(domain: str, force: bool = False) -> list[str]:
        """Stop serving ``domain``; with ``force`` its users go too (their addresses are
        returned), without it a domain that has users is refused."""

    def list_domains() -> list[str]:
        """The domains served, sorted."""

    def domain_table() -> list[tuple[str, str | None, int | None]]:
        """(domain, the domain it is an alias of or None, default quota or None) per domain."""

    def has_domain(domain: str) -> bool:
        """Is mail for ``domain`` ours (a served domain or an alias domain)?"""

    def domain_alias_of(domain: str) -> str | None:
        """The domain ``domain`` is an alias of, or None."""

    # -- users ---------------------------------------------------------------------------------

    def add_user(address: str, password: str) -> str:
        """Create a user in a served domain, hashing ``password``; the canonical address."""

    def remove_user(address: str) -> str:
        """Remove a user (their mail is the store's business); the canonical address."""

    def set_password(address: str, password: str) -> str:
        """Replace a user's password; the canonical address."""

    def list_users(domain: str | None = None) -> list[str]:
        """The users of ``domain`` (or of every domain), sorted."""

    def has_user(address: str) -> bool:
        """Is there a user with this address?"""

    def lookup(address: str) -> tuple[bool, bool]:
        """(is the address's domain ours, is there such a user), in one round trip."""

    def password_hash(address: str) -> str | None:
        """The stored hash of the user's password (``passwords.py`` format), None if no user."""

    def replace_password_hash(address: str, old: str, new: str) -> bool:
        """Store ``new`` if the stored hash is still ``old`` (a migrated hash replaced by ours
        at login; a password changed meanwhile wins); whether it was replaced."""

    # -- login origins (``origins.py``) --------------------------------------------------------

    def is_admin(address: str) -> bool:
        """May ``address`` use the webmail's admin console."""

    def set_admin(address: str, admin: bool) -> str:
        """Grant or withdraw the admin console; the canonical address. AccountError for an
        unknown user."""

    def add_app_password(address: str, name: str) -> tuple[int, str]:
        """(id, password in clear, shown once) of a new app-specific password named ``name``
        for a mail client (``apppasswords.py``); AccountError for an unknown user."""

    def list_app_passwords(address: str) -> list:
        """The user's app passwords (``apppasswords.AppPassword``: id, name, created, last
        used), never their hashes."""

    def remove_app_password(address: str, app_id: int) -> bool:
        """Revoke one app password of ``address``; False if there is no such one."""

    def app_password_hashes(address: str, password: str) -> list[tuple[int, str]]:
        """(id, hash) of the app passwords of ``address`` that ``password`` could be."""

    def app_password_used(app_id: int) -> None:
        """Record a login with app password ``app_id`` (shown to the user)."""

    def login_origin_seen(address: str, client: str, since: float) -> bool:
        """``address`` logged in successfully from ``client`` at Unix time ``since`` or later."""

    def remember_login_origin(
        address: str, client: str, when: float, oldest: float, keep: int
    ) -> None:
        """Record a successful login; forget the account's origins older than ``oldest`` and
        all but its ``keep`` most recent."""

    # -- the rest ------------------------------------------------------------------------------

    def address_rules() -> "IAddressRules":
        """The aliases, forwards and quotas kept by the same backend."""

    def close() -> None:
        """Release what this thread holds open (a database connection)."""


class IAddressRules(Interface):
    """Aliases, forwards, domain aliases and quotas: the rules ``routing.py`` applies."""

    def add_alias(address: str, targets: list[str], check=None) -> tuple[str, list[str]]:
        """Make ``address`` (``local@domain``, or ``@domain`` for the catch-all) deliver to
        ``targets``; (canonical source, canonical targets). ``check(source)``, when given,
        runs before the change is committed and refuses it by raising."""

    def remove_alias(address: str, targets: list[str] | None = None) -> int:
        """Remove those targets of the alias (all of them for None); how many went."""

    def list_aliases(domain: str | None = None) -> list[tuple[str, list[str]]]:
        """(source, targets) per alias of ``domain`` (or of every domain)."""

    def alias_targets(address: str) -> list[str]:
        """Where an alias source (canonical ``local@domain`` or ``@domain``) leads, sorted."""

    def set_forward(user: str, targets: list[str], keep_copy: bool, check=None) -> list[str]:
        """Forward a user's mail to ``targets`` (none: stop), keeping a copy in their INBOX or
        not; the canonical targets. ``check(user)`` as for ``add_alias``."""

    def forward_of(user: str) -> tuple[list[str], bool]:
        """(forward targets, keep a copy in the user's INBOX)."""

    def set_quota(user: str, limit: int | None) -> str:
        """A user's storage limit in bytes (None: their domain's); the canonical address."""

    def set_domain_quota(domain: str, limit: int | None) -> str:
        """The default limit of a domain's users (None: unlimited); the canonical domain."""

    def quota_of(user: str) -> int | None:
        """The user's storage limit in bytes (their own, else their domain's); None:
        unlimited."""

    def first_user(domain: str | None) -> str | None:
        """The oldest account of ``domain`` (or of any domain): who gets postmaster@ mail when
        nobody was named for it."""


class IMailAccount(Interface):
    """A logged-in mail user: their canonical address and the store holding their mail."""

    address = Attribute("Canonical lower-case address, e.g. 'alice@example.test'.")
    store = Attribute("The IMailStore holding this user's mailboxes.")


class ILoginOrigins(Interface):
    """The client addresses (IPv4, or IPv6 /64) each account logged in from successfully lately.

    The login throttle asks it before refusing an address for an account under attack, so an
    address the owner uses is never locked out by someone else's failures.
    """

    def seen(account: str, client: str) -> Any:
        """A Deferred firing True when ``account`` logged in from ``client`` recently."""

    def remember(account: str, client: str) -> None:
        """``account`` just logged in from ``client``; returns at once (storing is deferred)."""
